"""The verifiable access log: the pure core (no database, no network).

- :mod:`govern.ledger.canonical`: an entry's leaf bytes are its RFC 8785 (JCS) canonical JSON.
- :mod:`govern.ledger.merkle`: an RFC 6962 / RFC 9162 Merkle tree over those leaves, kept as
  perfect-subtree hashes in a :class:`NodeStore`, with inclusion and consistency proofs and
  verifiers that follow RFC 9162 step by step.
- :mod:`govern.ledger.checkpoint`: tree heads as C2SP tlog-checkpoints in C2SP signed notes,
  signed with Ed25519, and the ``name+keyid+key`` verifier keys that check them.

Typical use::

    log = MerkleLog(store)
    index = log.append_many([entry_leaf_bytes(entry)])
    note = sign_checkpoint(Checkpoint(origin, log.size, log.root()), signer)
    # an auditor, offline:
    head = verify_checkpoint(note, vkey)
    verify_inclusion(leaf_hash(leaf), index, head.tree_size, proof, head.root_hash)
"""

from __future__ import annotations

from govern.ledger.canonical import (
    CanonicalJSONError,
    JSONValue,
    canonical_json,
    entry_leaf_bytes,
    parse_leaf,
)
from govern.ledger.checkpoint import (
    ALG_ED25519,
    Checkpoint,
    CheckpointError,
    CheckpointSignatureError,
    NoteSigner,
    NoteVerifier,
    SigningKeyError,
    VerifierKeyError,
    generate_key_file,
    is_valid_key_name,
    key_id,
    load_key_file,
    load_or_create_key_file,
    open_note,
    sign_checkpoint,
    sign_note,
    verifier_key,
    verify_checkpoint,
)
from govern.ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    LedgerIntegrityError,
    MemoryNodeStore,
    MerkleLog,
    NodeKey,
    NodeStore,
    ProofError,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "ALG_ED25519",
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CanonicalJSONError",
    "Checkpoint",
    "CheckpointError",
    "CheckpointSignatureError",
    "JSONValue",
    "LedgerIntegrityError",
    "MemoryNodeStore",
    "MerkleLog",
    "NodeKey",
    "NodeStore",
    "NoteSigner",
    "NoteVerifier",
    "ProofError",
    "SigningKeyError",
    "VerifierKeyError",
    "canonical_json",
    "entry_leaf_bytes",
    "generate_key_file",
    "is_valid_key_name",
    "key_id",
    "leaf_hash",
    "load_key_file",
    "load_or_create_key_file",
    "node_hash",
    "open_note",
    "parse_leaf",
    "sign_checkpoint",
    "sign_note",
    "verifier_key",
    "verify_checkpoint",
    "verify_consistency",
    "verify_inclusion",
]
