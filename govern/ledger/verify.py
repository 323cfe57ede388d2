"""``govern ledger verify``: check a log without trusting whoever serves it.

Input is a bundle: the entries' leaf bytes, the leaf hashes recorded when each was appended, the
signed checkpoints and the log's verifier key. Steps, each failing with LedgerVerificationError:

1. Every checkpoint's signature verifies under the verifier key, and sizes only grow.
2. The recorded leaf hashes reproduce every checkpoint's root: they are what was signed.
3. Successive checkpoints are consistent (an RFC 9162 consistency proof, built from the
   recorded hashes and checked with the standalone verifier).
4. Every entry is canonical JSON and hashes to its recorded leaf hash. The first one that
   does not is named: that is the entry altered after it was logged.
5. Every recorded anchor names a signed checkpoint and carries its root; and, when a chain is
   given, the Anchor contract on that chain holds that very root for that tree size. Without a
   chain (an offline bundle) the on-chain part is skipped, and the report says so.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from govern.errors import ValidationError
from govern.ledger.canonical import parse_leaf
from govern.ledger.checkpoint import verify_checkpoint
from govern.ledger.merkle import leaf_hash, node_hash, verify_consistency

__all__ = [
    "BUNDLE_FORMAT",
    "AnchorLookup",
    "AnchorRef",
    "Bundle",
    "LedgerVerificationError",
    "VerifyReport",
    "verify_bundle",
]

BUNDLE_FORMAT = "govern-ledger-bundle/1"


class LedgerVerificationError(ValidationError):
    code = "ledger_verification_failed"

    def __init__(self, message: str, *, first_bad_index: int | None = None) -> None:
        super().__init__(message, details={"first_bad_index": first_bad_index})
        self.first_bad_index = first_bad_index


@dataclass(frozen=True)
class AnchorRef:
    """Where a checkpoint's root was anchored: enough to look it up on the chain."""

    tree_size: int
    root_hash: bytes
    chain_id: int
    contract_address: str
    tx_hash: str
    block_number: int

    def to_json(self) -> dict[str, Any]:
        return {
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "chain_id": self.chain_id,
            "contract_address": self.contract_address,
            "tx_hash": self.tx_hash,
            "block_number": self.block_number,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnchorRef:
        return cls(
            tree_size=int(data["tree_size"]),
            root_hash=bytes.fromhex(data["root_hash"]),
            chain_id=int(data["chain_id"]),
            contract_address=str(data["contract_address"]),
            tx_hash=str(data["tx_hash"]),
            block_number=int(data["block_number"]),
        )


class AnchorLookup(Protocol):
    """The part of a chain the verifier needs (``govern.ledger.anchor.Chain`` is one)."""

    description: str

    @property
    def chain_id(self) -> int: ...

    def lookup(self, tree_size: int, contract_address: str | None = None) -> bytes | None: ...


@dataclass
class Bundle:
    origin: str
    vkey: str
    leaves: list[bytes]
    leaf_hashes: list[bytes]
    checkpoints: list[str]
    anchors: list[AnchorRef] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": BUNDLE_FORMAT,
            "origin": self.origin,
            "vkey": self.vkey,
            "checkpoints": self.checkpoints,
            "anchors": [a.to_json() for a in self.anchors],
            "entries": [base64.b64encode(x).decode() for x in self.leaves],
            "leaf_hashes": [h.hex() for h in self.leaf_hashes],
        }

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json()))

    @classmethod
    def read(cls, path: Path) -> Bundle:
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise ValidationError(f"unreadable ledger bundle: {exc}") from exc
        return cls.from_json(data)

    @classmethod
    def from_json(cls, data: Any) -> Bundle:
        try:
            if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
                raise ValidationError(f"not a {BUNDLE_FORMAT} file")
            return cls(
                origin=data["origin"],
                vkey=data["vkey"],
                leaves=[base64.b64decode(x, validate=True) for x in data["entries"]],
                leaf_hashes=[bytes.fromhex(h) for h in data["leaf_hashes"]],
                checkpoints=list(data["checkpoints"]),
                # Bundles written before anchoring existed have no anchors.
                anchors=[AnchorRef.from_json(a) for a in data.get("anchors", [])],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"unreadable ledger bundle: {exc}") from exc


@dataclass
class VerifyReport:
    entries: int
    checkpoints: int
    verified_size: int
    anchors: int = 0
    anchors_on_chain: int = 0
    chain: str | None = None
    notes: list[str] = field(default_factory=list)


class _Tree:
    """RFC 6962 MTH over a list of leaf hashes (the recorded ones), with subtree caching."""

    def __init__(self, hashes: Sequence[bytes]) -> None:
        self.hashes = hashes
        self._memo: dict[tuple[int, int], bytes] = {}

    def mth(self, start: int, end: int) -> bytes:
        n = end - start
        if n == 1:
            return self.hashes[start]
        key = (start, end)
        if key not in self._memo:
            k = 1 << ((n - 1).bit_length() - 1)
            self._memo[key] = node_hash(self.mth(start, start + k), self.mth(start + k, end))
        return self._memo[key]

    def subproof(self, m: int, start: int, end: int, complete: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if complete else [self.mth(start, end)]
        k = 1 << ((n - 1).bit_length() - 1)
        if m <= k:
            return [*self.subproof(m, start, start + k, complete), self.mth(start + k, end)]
        return [*self.subproof(m - k, start + k, end, False), self.mth(start, start + k)]


def verify_bundle(bundle: Bundle, chain: AnchorLookup | None = None) -> VerifyReport:
    """Check the bundle (steps 1-5 above); with ``chain``, check its anchors on that chain."""
    report = VerifyReport(
        entries=len(bundle.leaves), checkpoints=len(bundle.checkpoints), verified_size=0
    )
    if len(bundle.leaf_hashes) != len(bundle.leaves):
        raise LedgerVerificationError("the bundle's entries and leaf hashes differ in number")
    # 1. Signatures, and sizes that only grow.
    heads = []
    for note in bundle.checkpoints:
        try:
            heads.append(verify_checkpoint(note, bundle.vkey))
        except ValidationError as exc:
            raise LedgerVerificationError(f"a checkpoint signature is invalid: {exc}") from exc
    for a, b in itertools.pairwise(heads):
        if b.tree_size <= a.tree_size:
            raise LedgerVerificationError("checkpoint sizes do not grow")
    tree = _Tree(bundle.leaf_hashes)
    # 2. The recorded hashes are what was signed.
    for head in heads:
        if head.tree_size > len(bundle.leaf_hashes):
            raise LedgerVerificationError(
                f"checkpoint of size {head.tree_size} covers entries the bundle lacks",
                first_bad_index=len(bundle.leaf_hashes),
            )
        if head.tree_size and tree.mth(0, head.tree_size) != head.root_hash:
            raise LedgerVerificationError(
                f"recorded leaf hashes do not reproduce checkpoint {head.tree_size}"
            )
    # 3. Each checkpoint extends the one before it.
    for a, b in itertools.pairwise(heads):
        if a.tree_size:
            proof = tree.subproof(a.tree_size, 0, b.tree_size, True)
            verify_consistency(a.tree_size, b.tree_size, a.root_hash, b.root_hash, proof)
    # 4. Every entry is what was logged.
    for i, (leaf, recorded) in enumerate(zip(bundle.leaves, bundle.leaf_hashes, strict=True)):
        if leaf_hash(leaf) != recorded:
            raise LedgerVerificationError(
                f"entry {i} was altered after it was logged", first_bad_index=i
            )
        try:
            parse_leaf(leaf)
        except ValidationError as exc:
            raise LedgerVerificationError(
                f"entry {i} is not canonical JSON", first_bad_index=i
            ) from exc
    report.verified_size = heads[-1].tree_size if heads else 0
    if report.verified_size < report.entries:
        report.notes.append(
            f"entries {report.verified_size}..{report.entries - 1} are not yet covered by a "
            "signed checkpoint"
        )
    # 5. Anchors: each one is a signed checkpoint's root, and the chain holds that root.
    _verify_anchors(bundle.anchors, {h.tree_size: h.root_hash for h in heads}, chain, report)
    return report


def _verify_anchors(
    anchors: Sequence[AnchorRef],
    signed: dict[int, bytes],
    chain: AnchorLookup | None,
    report: VerifyReport,
) -> None:
    report.anchors = len(anchors)
    for a in anchors:
        if signed.get(a.tree_size) != a.root_hash:
            raise LedgerVerificationError(
                f"the anchor recorded for tree size {a.tree_size} (tx {a.tx_hash}) does not carry "
                "the root of a signed checkpoint of that size"
            )
    if not anchors:
        return
    if chain is None:
        report.notes.append(
            f"{len(anchors)} anchors were NOT checked on a chain (offline); give --rpc-url "
            "to check them"
        )
        return
    report.chain = f"{chain.description} (chain id {chain.chain_id})"
    elsewhere = 0
    for a in anchors:
        if a.chain_id != chain.chain_id:
            elsewhere += 1
            continue
        on_chain = chain.lookup(a.tree_size, a.contract_address)
        if on_chain is None:
            raise LedgerVerificationError(
                f"anchor of tree size {a.tree_size} is recorded (tx {a.tx_hash}, block "
                f"{a.block_number}) but contract {a.contract_address} on {chain.description} "
                "holds no root for that size"
            )
        if on_chain != a.root_hash:
            raise LedgerVerificationError(
                f"anchor MISMATCH at tree size {a.tree_size}: contract {a.contract_address} on "
                f"{chain.description} holds root {on_chain.hex()}, the signed checkpoint says "
                f"{a.root_hash.hex()}"
            )
        report.anchors_on_chain += 1
    if elsewhere:
        report.notes.append(
            f"{elsewhere} anchors were recorded on other chains than chain id {chain.chain_id} "
            "and were not checked"
        )
