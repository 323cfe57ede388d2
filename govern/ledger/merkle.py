"""RFC 6962 / RFC 9162 Merkle tree over an append-only list of leaves.

Hashing (RFC 9162 section 2.1.1): ``leaf = SHA-256(0x00 || leaf bytes)``,
``node = SHA-256(0x01 || left || right)``; the root of the empty tree is ``SHA-256("")``.

State lives in a :class:`NodeStore` that holds the hash of every *complete* (perfect) subtree,
keyed by ``(level, index)``: leaves are level 0, and node ``(L, i)`` covers leaves
``[i * 2**L, (i + 1) * 2**L)``. A complete subtree never changes once all of its leaves exist, so
the store is append-only too. Any tree size is then a short run of stored perfect subtrees (one
per set bit of the size), which gives:

- ``append_many`` of k leaves: O(k) hashes amortised (a binary counter of carries), one
  ``put_many``; the right edge of the tree (the "frontier") is kept in memory.
- ``root``, ``inclusion_proof``, ``consistency_proof``: O(log n) keys read in one ``get_many``,
  never a rebuild.

The verifiers follow RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step and raise
:class:`ProofError` on any failure.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias, runtime_checkable

from govern.errors import Conflict, GovernError, NotFound, ValidationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LedgerIntegrityError",
    "MemoryNodeStore",
    "MerkleLog",
    "NodeKey",
    "NodeStore",
    "ProofError",
    "leaf_hash",
    "node_hash",
    "verify_consistency",
    "verify_inclusion",
]

NodeKey: TypeAlias = tuple[int, int]
"""``(level, index)`` of a perfect subtree; leaves are level 0."""

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

# RFC 9162 fields are uint64; bounding sizes keeps a hostile verifier input from costing more
# than 64 loop rounds.
_MAX_TREE_SIZE = 1 << 64
_MAX_PROOF_LEN = 2 * 64


class ProofError(ValidationError):
    """An inclusion or consistency proof, or the tree head it is checked against, is wrong."""

    code = "proof_invalid"


class LedgerIntegrityError(GovernError):
    """The node store lacks a node that the log's own size says it must hold (500)."""

    code = "ledger_integrity"


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 9162 leaf hash: ``SHA-256(0x00 || leaf)``."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


@runtime_checkable
class NodeStore(Protocol):
    """Storage of perfect-subtree hashes, keyed by ``(level, index)``.

    Implementations must make ``put_many`` atomic (all items or none) and must refuse, with
    :class:`govern.errors.Conflict`, to write a key that already exists: that is what stops two
    writers with stale state from forking the log. ``size()`` is the number of leaves (level-0
    keys); the log writes them contiguously from 0.
    """

    def get_many(self, keys: Collection[NodeKey]) -> dict[NodeKey, bytes]:
        """Return the hashes of those ``keys`` that are stored (missing keys are left out)."""
        ...

    def put_many(self, items: Mapping[NodeKey, bytes]) -> None:
        """Store all ``items`` atomically; raise ``Conflict`` if any key is already stored."""
        ...

    def size(self) -> int:
        """Number of leaves stored."""
        ...


class MemoryNodeStore:
    """In-process :class:`NodeStore` (tests, benchmarks, throwaway logs)."""

    def __init__(self) -> None:
        self._nodes: dict[NodeKey, bytes] = {}
        self._leaves = 0
        self._lock = threading.Lock()

    def get_many(self, keys: Collection[NodeKey]) -> dict[NodeKey, bytes]:
        nodes = self._nodes
        return {key: nodes[key] for key in keys if key in nodes}

    def put_many(self, items: Mapping[NodeKey, bytes]) -> None:
        with self._lock:
            # Check everything before writing anything, so a refused batch leaves no trace.
            clashes = [key for key in items if key in self._nodes]
            if clashes:
                raise Conflict(
                    "node already stored; the log was appended to by another writer",
                    details={"keys": sorted(clashes)[:8]},
                )
            self._nodes.update(items)
            self._leaves += sum(1 for level, _ in items if level == 0)

    def size(self) -> int:
        return self._leaves

    def __len__(self) -> int:
        """Number of nodes stored (all levels)."""
        return len(self._nodes)


# --- tree geometry ------------------------------------------------------------------------------


def _split(width: int) -> int:
    """RFC 9162 k: the largest power of two smaller than ``width`` (``width`` > 1)."""
    return 1 << ((width - 1).bit_length() - 1)


def _range_keys(start: int, end: int) -> list[NodeKey]:
    """The perfect subtrees whose right fold is MTH(D[start:end]), left to right.

    Valid for the ranges the RFC recursion produces, whose start is aligned to the smallest power
    of two >= their width: then the RFC's split points are exactly the set bits of the width.
    """
    width = end - start
    if width <= 0 or start % (1 << (width - 1).bit_length()):
        raise AssertionError(f"unaligned range [{start}, {end})")
    keys: list[NodeKey] = []
    for level in range(width.bit_length() - 1, -1, -1):
        if width >> level & 1:
            keys.append((level, start >> level))
            start += 1 << level
    return keys


def _frontier_keys(size: int) -> list[NodeKey]:
    """Perfect subtrees that make up a tree of ``size`` leaves, left to right."""
    return _range_keys(0, size) if size else []


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose MTHs are RFC 9162 PATH(index, D[size]), from the leaf up."""
    start, end = 0, size
    siblings: list[tuple[int, int]] = []
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])
            siblings.append((start + k, end))
            end = start + k
        else:
            # PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])
            siblings.append((start, start + k))
            start += k
    siblings.reverse()  # found top-down; the RFC lists the deepest sibling first
    return siblings


def _consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """Leaf ranges whose MTHs are RFC 9162 PROOF(first, D[second]), 0 < first < second."""
    start, end, m = 0, second, first
    whole = True  # SUBPROOF's b: still inside the subtree that is the whole first tree
    base: list[tuple[int, int]] = []
    siblings: list[tuple[int, int]] = []
    while True:
        width = end - start
        if m == width:
            # SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}
            if not whole:
                base.append((start, end))
            break
        k = _split(width)
        if m <= k:
            # SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            siblings.append((start + k, end))
            end = start + k
        else:
            # SUBPROOF(m, D[n], b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            siblings.append((start, start + k))
            start += k
            m -= k
            whole = False
    siblings.reverse()
    return base + siblings


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Right fold of perfect-subtree roots into the MTH of their concatenation."""
    result = hashes[-1]
    for h in reversed(hashes[:-1]):
        result = node_hash(h, result)
    return result


# --- the log -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _State:
    """Size and right edge of the tree, swapped as one object so readers never see a mix."""

    size: int
    frontier: dict[NodeKey, bytes]


def _check_int(name: str, value: object) -> int:
    # bool is an int subclass; True as an index is a caller bug, not leaf 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(f"{name} must be an integer", details={name: repr(value)})
    if value < 0:
        raise ValidationError(f"{name} must not be negative", details={name: value})
    return value


class MerkleLog:
    """Append-only RFC 9162 Merkle log over a :class:`NodeStore`.

    Reads for tree sizes up to the current size are safe from any thread; appends are serialised
    by a lock. Several processes may share one store: a stale writer's ``put_many`` fails with
    ``Conflict`` (call :meth:`refresh` and retry), and a reader asked for a size beyond what it
    knows refreshes once before answering ``NotFound``.
    """

    def __init__(self, store: NodeStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._state = self._load()

    @property
    def size(self) -> int:
        """Number of leaves in the log."""
        return self._state.size

    def refresh(self) -> int:
        """Re-read size and frontier from the store (after another writer appended)."""
        with self._lock:
            self._state = self._load()
            return self._state.size

    def _load(self) -> _State:
        size = self._store.size()
        if not isinstance(size, int) or size < 0:
            raise LedgerIntegrityError(f"node store reports an invalid size {size!r}")
        keys = _frontier_keys(size)
        found = self._store.get_many(keys)
        missing = [key for key in keys if key not in found]
        if missing:
            raise LedgerIntegrityError(
                f"node store of size {size} lacks frontier nodes", details={"missing": missing}
            )
        return _State(size, {key: found[key] for key in keys})

    def append_many(self, leaves: Sequence[bytes]) -> int:
        """Append leaves (raw leaf bytes, hashed here) and return the index of the first one."""
        if isinstance(leaves, (bytes, bytearray, str)):
            # A bare bytes object is a Sequence of ints; appending it byte by byte is never meant.
            raise ValidationError("append_many takes a sequence of leaves, not one leaf")
        if not leaves:
            raise ValidationError("append_many needs at least one leaf")
        hashes: list[bytes] = []
        for position, leaf in enumerate(leaves):
            if not isinstance(leaf, bytes):
                raise ValidationError(
                    "each leaf must be bytes",
                    details={"position": position, "type": type(leaf).__name__},
                )
            hashes.append(leaf_hash(leaf))
        with self._lock:
            state = self._state
            # Right edge by level: the level-L perfect subtree at the end of the tree, if any.
            edge = {key[0]: (key, h) for key, h in state.frontier.items()}
            new_nodes: dict[NodeKey, bytes] = {}
            size = state.size
            for h in hashes:
                level, index = 0, size
                new_nodes[(0, index)] = h
                # Binary-counter carry: while this node is a right child, its left sibling is the
                # edge node of the same level; together they complete their parent.
                while index & 1:
                    _, left = edge.pop(level)
                    h = node_hash(left, h)
                    level, index = level + 1, index >> 1
                    new_nodes[(level, index)] = h
                edge[level] = ((level, index), h)
                size += 1
            # Build the new state aside; it replaces the old one only once the store accepted
            # the batch, so a failed write leaves this object as it was.
            self._store.put_many(new_nodes)
            self._state = _State(size, dict(edge.values()))
            return state.size

    def root(self, tree_size: int | None = None) -> bytes:
        """MTH of the first ``tree_size`` leaves (default: all); ``EMPTY_ROOT`` for 0."""
        state = self._state if tree_size is None else self._at_least(tree_size, "tree_size")
        n = state.size if tree_size is None else tree_size
        if n == 0:
            return EMPTY_ROOT
        return self._mths(state, [(0, n)])[0]

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 inclusion proof (audit path, from the leaf up) of leaf ``index``."""
        index = _check_int("index", index)
        state = self._at_least(tree_size, "tree_size")
        if index >= tree_size:
            if index >= state.size:
                raise NotFound(
                    f"no leaf {index}: the log has {state.size} leaves",
                    details={"index": index, "size": state.size},
                )
            raise ValidationError(
                f"leaf {index} is not in the tree of size {tree_size}",
                details={"index": index, "tree_size": tree_size},
            )
        return self._mths(state, _inclusion_ranges(index, tree_size))

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """RFC 9162 consistency proof between tree sizes ``first`` <= ``second``.

        Empty when ``first == second`` or ``first == 0``: nothing needs proving (the empty tree
        is a prefix of every tree), as in the transparency-dev reference verifier.
        """
        first = _check_int("first", first)
        state = self._at_least(second, "second")
        if first > second:
            raise ValidationError(
                f"first ({first}) must not exceed second ({second})",
                details={"first": first, "second": second},
            )
        if first in (0, second):
            return []
        return self._mths(state, _consistency_ranges(first, second))

    def _at_least(self, tree_size: int, name: str) -> _State:
        """Current state, refreshed once if ``tree_size`` is beyond what this object knows."""
        tree_size = _check_int(name, tree_size)
        state = self._state
        if tree_size > state.size:
            self.refresh()
            state = self._state
            if tree_size > state.size:
                raise NotFound(
                    f"tree size {tree_size} not reached: the log has {state.size} leaves",
                    details={name: tree_size, "size": state.size},
                )
        return state

    def _mths(self, state: _State, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """MTH of each leaf range, reading all needed nodes with one ``get_many``."""
        per_range = [_range_keys(start, end) for start, end in ranges]
        cached = state.frontier
        wanted = {key for keys in per_range for key in keys if key not in cached}
        found = self._store.get_many(wanted) if wanted else {}
        missing = wanted.difference(found)
        if missing:
            raise LedgerIntegrityError(
                "node store lacks nodes of complete subtrees", details={"missing": sorted(missing)}
            )
        nodes = {**found, **cached}
        return [_fold([nodes[key] for key in keys]) for keys in per_range]


# --- verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2) --------------------------------------


def _check_hash(name: str, value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError(f"{name} must be {HASH_SIZE} bytes")
    return value


def _check_size(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _MAX_TREE_SIZE:
        raise ProofError(f"{name} must be an integer in [0, 2**64)", details={name: repr(value)})
    return value


def _check_path(proof: object) -> list[bytes]:
    if not isinstance(proof, Sequence) or isinstance(proof, (bytes, bytearray, str)):
        raise ProofError("proof must be a sequence of hashes")
    # A valid path has about one hash per tree level; refusing longer ones bounds the work.
    if len(proof) > _MAX_PROOF_LEN:
        raise ProofError(f"proof has {len(proof)} hashes, more than any tree of 2**64 leaves needs")
    return [_check_hash(f"proof[{i}]", p) for i, p in enumerate(proof)]


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``tree_size`` with ``root``.

    Returns nothing on success; raises :class:`ProofError` naming the failed step otherwise.
    """
    hash_ = _check_hash("leaf_hash", leaf_hash)
    root = _check_hash("root", root)
    leaf_index = _check_size("index", index)
    tree_size = _check_size("tree_size", tree_size)
    inclusion_path = _check_path(proof)

    # 1. If leaf_index is greater than or equal to tree_size, fail.
    if leaf_index >= tree_size:
        raise ProofError(f"step 1: leaf index {leaf_index} is not below tree size {tree_size}")
    # 2. Set fn to leaf_index and sn to tree_size - 1.
    fn, sn = leaf_index, tree_size - 1
    # 3. Set r to hash.
    r = hash_
    # 4. For each value p in the inclusion_path array:
    for p in inclusion_path:
        # a. If sn is 0, stop the iteration and fail.
        if sn == 0:
            raise ProofError("step 4a: proof is longer than the path to the root")
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # i. Set r to HASH(0x01 || p || r).
            r = node_hash(p, r)
            # ii. If LSB(fn) is not set, right-shift fn and sn equally until either LSB(fn) is
            #     set or fn is 0.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        # Otherwise:
        else:
            # i. Set r to HASH(0x01 || r || p).
            r = node_hash(r, p)
        # c. Right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 5. Compare sn to 0 and r against the root hash; fail if either differs.
    if sn != 0:
        raise ProofError("step 5: proof is shorter than the path to the root")
    if not hmac.compare_digest(r, root):
        raise ProofError("step 5: computed root does not match the given root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree ``second``/``second_root`` extends ``first``/``first_root``.

    Returns nothing on success; raises :class:`ProofError` naming the failed step otherwise.
    """
    first_hash = _check_hash("first_root", first_root)
    second_hash = _check_hash("second_root", second_root)
    first = _check_size("first", first)
    second = _check_size("second", second)
    consistency_path = _check_path(proof)

    # RFC 9162 gives the algorithm for 0 < first < second. The other orderings are settled first.
    if first > second:
        raise ProofError(f"first ({first}) exceeds second ({second})")
    if first == second:
        # A tree is consistent with itself only: nothing to prove, the roots must be equal.
        if consistency_path:
            raise ProofError("equal sizes need an empty proof")
        if not hmac.compare_digest(first_hash, second_hash):
            raise ProofError("equal sizes but different roots")
        return
    if first == 0:
        # The empty tree is a prefix of every tree; its root is fixed by RFC 9162 2.1.1.
        if consistency_path:
            raise ProofError("a proof from the empty tree must be empty")
        if not hmac.compare_digest(first_hash, EMPTY_ROOT):
            raise ProofError("first_root is not the root of the empty tree")
        return

    # 1. If consistency_path is an empty array, stop and fail.
    if not consistency_path:
        raise ProofError("step 1: empty proof for different tree sizes")
    # 2. If first is an exact power of 2, prepend first_hash to the consistency_path array.
    if first & (first - 1) == 0:
        consistency_path = [first_hash, *consistency_path]
    # 3. Set fn to first - 1 and sn to second - 1.
    fn, sn = first - 1, second - 1
    # 4. If LSB(fn) is set, right-shift both fn and sn equally until LSB(fn) is not set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. Set both fr and sr to the first value in the consistency_path array.
    fr = sr = consistency_path[0]
    # 6. For each subsequent value c in the consistency_path array:
    for c in consistency_path[1:]:
        # a. If sn is 0, stop the iteration and fail.
        if sn == 0:
            raise ProofError("step 6a: proof is longer than the path to the root")
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # i. Set fr to HASH(0x01 || c || fr); set sr to HASH(0x01 || c || sr).
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            # ii. If LSB(fn) is not set, right-shift both fn and sn equally until either LSB(fn)
            #     is set or fn is 0.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        # Otherwise:
        else:
            # i. Set sr to HASH(0x01 || sr || c).
            sr = node_hash(sr, c)
        # c. Right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 7. Check fr against first_hash, sr against second_hash, and that sn is 0.
    if sn != 0:
        raise ProofError("step 7: proof is shorter than the path to the root")
    if not hmac.compare_digest(fr, first_hash):
        raise ProofError("step 7: computed first root does not match first_root")
    if not hmac.compare_digest(sr, second_hash):
        raise ProofError("step 7: computed second root does not match second_root")
