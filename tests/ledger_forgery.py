"""A dishonest operator, for tests: rewrites an entry and re-signs everything with its own key.

The result passes every offline check (signatures, roots, consistency, anchors matching the
checkpoints); only the chain, which still holds the original roots, can tell.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from govern.ledger.canonical import canonical_json
from govern.ledger.checkpoint import Checkpoint, NoteSigner, load_key_file, sign_checkpoint
from govern.ledger.merkle import MemoryNodeStore, MerkleLog, leaf_hash
from govern.ledger.verify import Bundle


def forge_history(bundle: Bundle, key_path: Path, index: int) -> Bundle:
    """The bundle with entry ``index``'s actor changed, and checkpoints and anchors redone."""
    forged_entry = json.loads(bundle.leaves[index])
    forged_entry["actor"] = "someone-else"
    leaves = list(bundle.leaves)
    leaves[index] = canonical_json(forged_entry)
    tree = MerkleLog(MemoryNodeStore())
    tree.append_many(leaves)
    signer = NoteSigner(bundle.origin, load_key_file(key_path))
    checkpoints = []
    roots: dict[int, bytes] = {}
    for note in bundle.checkpoints:
        size = int(note.splitlines()[1])
        roots[size] = tree.root(size)
        checkpoints.append(sign_checkpoint(Checkpoint(bundle.origin, size, roots[size]), signer))
    return Bundle(
        origin=bundle.origin,
        vkey=bundle.vkey,
        leaves=leaves,
        leaf_hashes=[leaf_hash(x) for x in leaves],
        checkpoints=checkpoints,
        anchors=[replace(a, root_hash=roots[a.tree_size]) for a in bundle.anchors],
    )
