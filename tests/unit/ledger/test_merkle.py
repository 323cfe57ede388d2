"""The Merkle log against an independent reference written from RFC 6962 section 2.1.

The reference below follows the RFC's recursive definitions (MTH, PATH, PROOF/SUBPROOF) on
plain lists of leaves and shares no code with ``govern.ledger.merkle``. Every tree size up to 70 is
checked exhaustively (every index, every first <= second pair); larger trees are sampled. The
``pymerkle`` package (RFC 6962 hashing in its default "security" mode) is a second, third-party
check of roots and audit paths; its consistency proofs use another layout, so there it only
confirms our roots.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govern.errors import Conflict, GovernError, NotFound, ValidationError
from govern.ledger.merkle import (
    EMPTY_ROOT,
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

EXHAUSTIVE = 70
LARGE = 3000


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class Reference:
    """RFC 6962 section 2.1 transcribed: D[a:b] is leaves[a:b], k the largest power of 2 < n."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.leaves = list(leaves)
        self._memo: dict[tuple[int, int], bytes] = {}

    @staticmethod
    def k(n: int) -> int:
        k = 1
        while k * 2 < n:
            k *= 2
        return k

    def mth(self, a: int, b: int) -> bytes:
        """MTH(D[a:b])."""
        if (a, b) not in self._memo:
            n = b - a
            if n == 0:
                value = sha256(b"")
            elif n == 1:
                value = sha256(b"\x00" + self.leaves[a])
            else:
                k = self.k(n)
                value = sha256(b"\x01" + self.mth(a, a + k) + self.mth(a + k, b))
            self._memo[(a, b)] = value
        return self._memo[(a, b)]

    def path(self, m: int, a: int, b: int) -> list[bytes]:
        """PATH(m, D[a:b]), m relative to a."""
        n = b - a
        if n == 1:
            return []
        k = self.k(n)
        if m < k:
            return [*self.path(m, a, a + k), self.mth(a + k, b)]
        return [*self.path(m - k, a + k, b), self.mth(a, a + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        """PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""
        return self.subproof(m, 0, n, True)

    def subproof(self, m: int, a: int, b: int, whole: bool) -> list[bytes]:
        n = b - a
        if m == n:
            return [] if whole else [self.mth(a, b)]
        k = self.k(n)
        if m <= k:
            return [*self.subproof(m, a, a + k, whole), self.mth(a + k, b)]
        return [*self.subproof(m - k, a + k, b, False), self.mth(a, a + k)]


def ref_root_from_path(leaf: bytes, m: int, n: int, path: Sequence[bytes]) -> bytes:
    """Walk PATH's recursion backwards: the last hash is the top-level sibling."""
    if n == 1:
        assert not path
        return leaf
    k = Reference.k(n)
    if m < k:
        return sha256(b"\x01" + ref_root_from_path(leaf, m, k, path[:-1]) + path[-1])
    return sha256(b"\x01" + path[-1] + ref_root_from_path(leaf, m - k, n - k, path[:-1]))


def ref_roots_from_proof(
    m: int, n: int, proof: Sequence[bytes], first_root: bytes, whole: bool = True
) -> tuple[bytes, bytes]:
    """Walk SUBPROOF's recursion backwards; return (MTH(D[0:m]), MTH(D[0:n])) the proof implies."""
    if m == n:
        if whole:
            assert not proof
            return first_root, first_root
        assert len(proof) == 1
        return proof[0], proof[0]
    k = Reference.k(n)
    if m <= k:
        old, new = ref_roots_from_proof(m, k, proof[:-1], first_root, whole)
        return old, sha256(b"\x01" + new + proof[-1])
    old, new = ref_roots_from_proof(m - k, n - k, proof[:-1], first_root, False)
    return sha256(b"\x01" + proof[-1] + old), sha256(b"\x01" + proof[-1] + new)


def make_leaves(count: int) -> list[bytes]:
    # Varying lengths, including the empty leaf, so leaf hashing is exercised too.
    return [b"" if i == 0 else f"entry {i}:".encode() * (i % 5) for i in range(count)]


def batches(total: int, seed: int) -> Iterator[int]:
    rng = random.Random(seed)
    done = 0
    while done < total:
        size = min(total - done, rng.choice([1, 1, 2, 3, 7, 16, 33, 100]))
        yield size
        done += size


LEAVES = make_leaves(LARGE)
REF = Reference(LEAVES)


@pytest.fixture(scope="module")
def log() -> MerkleLog:
    merkle_log = MerkleLog(MemoryNodeStore())
    position = 0
    for size in batches(LARGE, seed=1):
        assert merkle_log.append_many(LEAVES[position : position + size]) == position
        position += size
    return merkle_log


def flipped(data: bytes, bit: int = 0) -> bytes:
    return data[:0] + bytes([data[0] ^ (1 << bit)]) + data[1:]


# --- hashing and known answers --------------------------------------------------------------------


def test_hashes_are_rfc6962_prefixed_sha256() -> None:
    assert leaf_hash(b"abc") == sha256(b"\x00abc")
    assert node_hash(b"L" * 32, b"R" * 32) == sha256(b"\x01" + b"L" * 32 + b"R" * 32)
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


# The leaves, roots and proofs of the Certificate Transparency / Trillian reference test vectors.
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = {
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}
CT_CONSISTENCY = {
    (1, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}


def test_certificate_transparency_known_answers() -> None:
    ct_log = MerkleLog(MemoryNodeStore())
    ct_log.append_many(CT_LEAVES)
    assert ct_log.root(0) == EMPTY_ROOT
    assert [ct_log.root(n).hex() for n in range(1, 9)] == CT_ROOTS
    for (index, size), hashes in CT_INCLUSION.items():
        proof = ct_log.inclusion_proof(index, size)
        assert [h.hex() for h in proof] == hashes
        verify_inclusion(leaf_hash(CT_LEAVES[index]), index, size, proof, ct_log.root(size))
    for (first, second), hashes in CT_CONSISTENCY.items():
        proof = ct_log.consistency_proof(first, second)
        assert [h.hex() for h in proof] == hashes
        verify_consistency(first, second, ct_log.root(first), ct_log.root(second), proof)


# --- exhaustive agreement with the reference ------------------------------------------------------


@pytest.mark.parametrize("n", range(EXHAUSTIVE + 1))
def test_roots_and_inclusion_proofs_match_reference(log: MerkleLog, n: int) -> None:
    root = log.root(n)
    assert root == REF.mth(0, n)
    for index in range(n):
        proof = log.inclusion_proof(index, n)
        assert proof == REF.path(index, 0, n)
        hashed = leaf_hash(LEAVES[index])
        assert ref_root_from_path(hashed, index, n, proof) == root
        verify_inclusion(hashed, index, n, proof, root)


@pytest.mark.parametrize("n", range(EXHAUSTIVE + 1))
def test_consistency_proofs_match_reference(log: MerkleLog, n: int) -> None:
    second_root = log.root(n)
    for m in range(n + 1):
        proof = log.consistency_proof(m, n)
        first_root = log.root(m)
        if 0 < m < n:
            assert proof == REF.proof(m, n)
            assert ref_roots_from_proof(m, n, proof, first_root) == (first_root, second_root)
        else:
            assert proof == []
        verify_consistency(m, n, first_root, second_root, proof)


@pytest.mark.parametrize("n", range(1, EXHAUSTIVE + 1))
def test_tampered_inclusion_proofs_fail(log: MerkleLog, n: int) -> None:
    root = log.root(n)
    for index in range(n):
        hashed = leaf_hash(LEAVES[index])
        proof = log.inclusion_proof(index, n)
        bad_proofs = [[*proof[:i], flipped(p, i % 8), *proof[i + 1 :]] for i, p in enumerate(proof)]
        bad_proofs += [[*proof, root], [root, *proof]]
        if proof:
            bad_proofs += [proof[:-1], proof[1:], proof[::-1]] if len(proof) > 1 else [[]]
        for bad in bad_proofs:
            with pytest.raises(ProofError):
                verify_inclusion(hashed, index, n, bad, root)
        with pytest.raises(ProofError):
            verify_inclusion(hashed, index, n, proof, flipped(root, 7))
        with pytest.raises(ProofError):
            verify_inclusion(flipped(hashed), index, n, proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(hashed, n, n, proof, root)  # step 1: index out of the tree
        # Another position: exhaustively in small trees, neighbours and mirror in larger ones.
        others = range(n) if n <= 24 else {index - 1, index + 1, n - 1 - index, 0, n - 1}
        for other in others:
            if other != index and 0 <= other < n:
                with pytest.raises(ProofError):
                    verify_inclusion(hashed, other, n, proof, root)
        # Another tree size, with that size's genuine root.
        for size in (n - 1, n + 1, 2 * n):
            if index < size <= LARGE and size != n:
                with pytest.raises(ProofError):
                    verify_inclusion(hashed, index, size, proof, log.root(size))


@pytest.mark.parametrize("n", range(2, EXHAUSTIVE + 1))
def test_tampered_consistency_proofs_fail(log: MerkleLog, n: int) -> None:
    second_root = log.root(n)
    for m in range(1, n):
        first_root = log.root(m)
        proof = log.consistency_proof(m, n)
        bad_proofs = [[*proof[:i], flipped(p, i % 8), *proof[i + 1 :]] for i, p in enumerate(proof)]
        bad_proofs += [[*proof, second_root], [first_root, *proof], proof[:-1], proof[1:], []]
        if len(proof) > 1:
            bad_proofs.append(proof[::-1])
        for bad in bad_proofs:
            with pytest.raises(ProofError):
                verify_consistency(m, n, first_root, second_root, bad)
        with pytest.raises(ProofError):
            verify_consistency(m, n, flipped(first_root), second_root, proof)
        with pytest.raises(ProofError):
            verify_consistency(m, n, first_root, flipped(second_root, 3), proof)
        with pytest.raises(ProofError):
            verify_consistency(m, n, second_root, first_root, proof)
        with pytest.raises(ProofError):
            verify_consistency(n, m, second_root, first_root, proof)
        # The same proof claimed for other sizes, with those sizes' genuine roots.
        for other_m in (m - 1, m + 1):
            if 0 < other_m < n and log.consistency_proof(other_m, n) != proof:
                with pytest.raises(ProofError):
                    verify_consistency(other_m, n, log.root(other_m), second_root, proof)
        for other_n in (n - 1, n + 1):
            if m < other_n and log.consistency_proof(m, other_n) != proof:
                with pytest.raises(ProofError):
                    verify_consistency(m, other_n, first_root, log.root(other_n), proof)


@pytest.mark.parametrize("n", range(2, EXHAUSTIVE + 1))
def test_each_rfc_step_catches_its_case(log: MerkleLog, n: int) -> None:
    # The hash comparison alone would reject most of these; each step must do so on its own.
    root = log.root(n)
    for index in range(n):
        hashed, proof = leaf_hash(LEAVES[index]), log.inclusion_proof(index, n)
        with pytest.raises(ProofError, match="step 4a"):
            verify_inclusion(hashed, index, n, [*proof, GOOD], root)
        with pytest.raises(ProofError, match="step 5: proof is shorter"):
            verify_inclusion(hashed, index, n, proof[:-1], root)
        with pytest.raises(ProofError, match="step 5: computed root"):
            verify_inclusion(hashed, index, n, proof, GOOD)
    for m in range(1, n):
        first_root, proof = log.root(m), log.consistency_proof(m, n)
        with pytest.raises(ProofError, match="step 1"):
            verify_consistency(m, n, first_root, root, [])
        with pytest.raises(ProofError, match="step 6a"):
            verify_consistency(m, n, first_root, root, [*proof, GOOD])
        if len(proof) > 1:
            with pytest.raises(ProofError, match="step 7: proof is shorter"):
                verify_consistency(m, n, first_root, root, proof[:-1])
        # With a power-of-two first size the first root seeds both fr and sr; sr then differs.
        with pytest.raises(ProofError, match=r"step 7: computed (first|second) root"):
            verify_consistency(m, n, GOOD, root, proof)
        if m & (m - 1):
            with pytest.raises(ProofError, match="step 7: computed first root"):
                verify_consistency(m, n, GOOD, root, proof)
        with pytest.raises(ProofError, match="step 7: computed second root"):
            verify_consistency(m, n, first_root, GOOD, proof)


def test_larger_trees_match_reference(log: MerkleLog) -> None:
    rng = random.Random(7)
    edges = [n for p in (256, 512, 1024, 2048) for n in (p - 1, p, p + 1)] + [LARGE]
    sizes = edges + [rng.randrange(EXHAUSTIVE + 1, LARGE + 1) for _ in range(40)]
    for n in sizes:
        root = log.root(n)
        assert root == REF.mth(0, n)
        for index in {0, n - 1, n // 2, *(rng.randrange(n) for _ in range(10))}:
            proof = log.inclusion_proof(index, n)
            assert proof == REF.path(index, 0, n)
            verify_inclusion(leaf_hash(LEAVES[index]), index, n, proof, root)
            with pytest.raises(ProofError):
                verify_inclusion(leaf_hash(LEAVES[index]), index, n, proof[:-1], root)
        for m in {1, n - 1, n // 2, *(rng.randrange(1, n) for _ in range(10))}:
            proof = log.consistency_proof(m, n)
            assert proof == REF.proof(m, n)
            first_root = log.root(m)
            verify_consistency(m, n, first_root, root, proof)
            with pytest.raises(ProofError):
                verify_consistency(m, n, first_root, root, [flipped(proof[0]), *proof[1:]])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=12))
def test_any_batching_gives_the_same_tree(batch_sizes: list[int]) -> None:
    total = sum(batch_sizes)
    store = MemoryNodeStore()
    merkle_log = MerkleLog(store)
    position = 0
    for size in batch_sizes:
        assert merkle_log.append_many(LEAVES[position : position + size]) == position
        position += size
        assert merkle_log.root() == REF.mth(0, position)
    assert merkle_log.size == store.size() == total
    # Exactly the complete subtrees are stored: floor(n / 2**L) nodes at each level L.
    assert len(store) == sum(total >> level for level in range(total.bit_length()))


# --- pymerkle, a third-party implementation -------------------------------------------------------


def test_agrees_with_pymerkle(log: MerkleLog) -> None:
    pymerkle = pytest.importorskip("pymerkle")
    tree = pymerkle.InmemoryTree(algorithm="sha256")  # RFC 6962 prefixes by default
    for leaf in LEAVES:
        tree.append_entry(leaf)
    rng = random.Random(11)
    sizes = [*range(EXHAUSTIVE + 1), *(rng.randrange(EXHAUSTIVE, LARGE + 1) for _ in range(30))]
    for n in sizes:
        root = log.root(n)
        assert tree.get_root(n) == root
        indices = range(n) if n <= EXHAUSTIVE else [rng.randrange(n) for _ in range(10)]
        for index in indices:
            theirs = tree.prove_inclusion(index + 1, n)  # pymerkle counts leaves from 1
            assert theirs.path == [leaf_hash(LEAVES[index]), *log.inclusion_proof(index, n)]
        for m in range(1, n, max(1, n // 10)):
            # Its consistency proofs have another layout; checking them against our roots is
            # what it can tell us.
            tree.prove_consistency(m, n).verify(log.root(m), root)


# --- store protocol, batching and state -----------------------------------------------------------


class CountingStore:
    """A MemoryNodeStore that records the calls made to it."""

    def __init__(self) -> None:
        self.inner = MemoryNodeStore()
        self.gets: list[int] = []
        self.puts: list[int] = []

    def get_many(self, keys: Collection[NodeKey]) -> dict[NodeKey, bytes]:
        self.gets.append(len(keys))
        return self.inner.get_many(keys)

    def put_many(self, items: Mapping[NodeKey, bytes]) -> None:
        self.puts.append(len(items))
        self.inner.put_many(items)

    def size(self) -> int:
        return self.inner.size()


def test_memory_store_satisfies_protocol() -> None:
    assert isinstance(MemoryNodeStore(), NodeStore)
    assert isinstance(CountingStore(), NodeStore)


def test_one_put_per_batch_and_one_get_per_proof() -> None:
    store = CountingStore()
    merkle_log = MerkleLog(store)
    store.gets.clear()
    for size in batches(1500, seed=3):
        merkle_log.append_many(LEAVES[merkle_log.size : merkle_log.size + size])
    assert store.gets == []  # appends never read: the frontier is in memory
    assert len(store.puts) == len(list(batches(1500, seed=3)))

    n = merkle_log.size
    assert merkle_log.root() == REF.mth(0, n)
    assert store.gets == []  # the current root comes from the frontier
    bound = 2 * n.bit_length()
    for index in (0, 1, 700, n - 4):
        store.gets.clear()
        merkle_log.inclusion_proof(index, n - 3)
        assert len(store.gets) <= 1  # nodes on the right edge come from memory
        assert sum(store.gets) <= bound
    for first in (1, 511, 512, 1000):
        store.gets.clear()
        merkle_log.consistency_proof(first, n - 1)
        assert len(store.gets) <= 1  # nodes on the right edge come from memory
        assert sum(store.gets) <= bound
    store.gets.clear()
    assert merkle_log.root(1234) == REF.mth(0, 1234)
    assert len(store.gets) == 1
    assert store.gets[0] <= bin(1234).count("1")  # a node per set bit, less what is in memory


def test_reopening_a_store_resumes_the_log() -> None:
    store = MemoryNodeStore()
    first = MerkleLog(store)
    first.append_many(LEAVES[:37])
    reopened = MerkleLog(store)
    assert reopened.size == 37
    assert reopened.root() == first.root()
    reopened.append_many(LEAVES[37:100])
    assert reopened.root() == REF.mth(0, 100)


def test_stale_writer_is_refused_and_recovers_after_refresh() -> None:
    store = MemoryNodeStore()
    writer_a, writer_b = MerkleLog(store), MerkleLog(store)
    writer_a.append_many(LEAVES[:5])
    root_before = writer_b.root()
    with pytest.raises(Conflict):
        writer_b.append_many([b"fork"])
    assert writer_b.size == 0  # a refused batch leaves the log object as it was
    assert writer_b.root() == root_before
    assert store.size() == 5
    writer_b.refresh()
    assert writer_b.append_many(LEAVES[5:6]) == 5
    assert writer_b.root() == REF.mth(0, 6)


def test_reader_refreshes_for_sizes_written_elsewhere() -> None:
    store = MemoryNodeStore()
    writer, reader = MerkleLog(store), MerkleLog(store)
    writer.append_many(LEAVES[:10])
    assert reader.size == 0
    assert reader.inclusion_proof(3, 10) == REF.path(3, 0, 10)
    assert reader.size == 10


def test_missing_nodes_are_an_integrity_error() -> None:
    store = MemoryNodeStore()
    MerkleLog(store).append_many(LEAVES[:6])
    # Corrupt a copy: drop the (1, 2) node, part of the 6-leaf frontier.
    broken = MemoryNodeStore()
    nodes = store.get_many([(level, i) for level in range(3) for i in range(6)])
    del nodes[(1, 2)]
    broken.put_many(nodes)
    with pytest.raises(LedgerIntegrityError):
        MerkleLog(broken)


# --- argument validation --------------------------------------------------------------------------


def test_empty_log() -> None:
    merkle_log = MerkleLog(MemoryNodeStore())
    assert merkle_log.size == 0
    assert merkle_log.root() == merkle_log.root(0) == EMPTY_ROOT
    assert merkle_log.consistency_proof(0, 0) == []
    with pytest.raises(NotFound):
        merkle_log.inclusion_proof(0, 0)
    with pytest.raises(NotFound):
        merkle_log.root(1)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda lg: lg.inclusion_proof(-1, 10), ValidationError),
        (lambda lg: lg.inclusion_proof(10, 10), ValidationError),  # leaf exists, not in tree 10
        (lambda lg: lg.inclusion_proof(LARGE, LARGE), NotFound),  # no such leaf at all
        (lambda lg: lg.inclusion_proof(0, LARGE + 1), NotFound),
        (lambda lg: lg.inclusion_proof(0, -1), ValidationError),
        (lambda lg: lg.inclusion_proof(True, 10), ValidationError),
        (lambda lg: lg.inclusion_proof(1.0, 10), ValidationError),
        (lambda lg: lg.inclusion_proof(0, 0), ValidationError),
        (lambda lg: lg.consistency_proof(5, 4), ValidationError),
        (lambda lg: lg.consistency_proof(-1, 4), ValidationError),
        (lambda lg: lg.consistency_proof(1, LARGE + 1), NotFound),
        (lambda lg: lg.consistency_proof("1", 4), ValidationError),
        (lambda lg: lg.root(LARGE + 1), NotFound),
        (lambda lg: lg.root(-1), ValidationError),
    ],
)
def test_bad_arguments(
    log: MerkleLog, call: Callable[[MerkleLog], object], error: type[GovernError]
) -> None:
    with pytest.raises(error) as info:
        call(log)
    assert info.value.message


@pytest.mark.parametrize(
    "leaves",
    [[], b"one leaf", bytearray(b"x"), "text", [b"ok", "text"], [b"ok", None], [bytearray(b"x")]],
)
def test_append_refuses_bad_leaves(leaves: object) -> None:
    merkle_log = MerkleLog(MemoryNodeStore())
    with pytest.raises(ValidationError):
        merkle_log.append_many(leaves)  # type: ignore[arg-type]
    assert merkle_log.size == 0


def test_errors_map_to_http_statuses() -> None:
    assert ProofError.http_status == 422
    assert issubclass(ProofError, ValidationError)
    assert NotFound.http_status == 404
    assert LedgerIntegrityError.http_status == 500


GOOD = sha256(b"x")


@pytest.mark.parametrize(
    "args",
    [
        (b"short", 0, 1, [], GOOD),
        (GOOD, 0, 1, [], b"short"),
        (GOOD, -1, 1, [], GOOD),
        (GOOD, 0, 1 << 64, [GOOD], GOOD),
        (GOOD, True, 2, [GOOD], GOOD),
        (GOOD, 0, 2, [b"short"], GOOD),
        (GOOD, 0, 2, GOOD, GOOD),  # bytes is not a list of hashes
        (GOOD, 0, 2, [GOOD] * 129, GOOD),
        (GOOD, 0, 0, [], GOOD),
        (GOOD, 0, 1, [GOOD], GOOD),  # a one-leaf tree has an empty path
    ],
)
def test_verify_inclusion_refuses_malformed_input(args: tuple[object, ...]) -> None:
    with pytest.raises(ProofError):
        verify_inclusion(*args)  # type: ignore[arg-type]


def test_verify_inclusion_single_leaf_tree() -> None:
    verify_inclusion(GOOD, 0, 1, [], GOOD)


def test_verify_consistency_trivial_cases() -> None:
    other = sha256(b"y")
    verify_consistency(5, 5, GOOD, GOOD, [])
    verify_consistency(0, 5, EMPTY_ROOT, GOOD, [])
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    for args in [
        (5, 5, GOOD, other, []),
        (5, 5, GOOD, GOOD, [GOOD]),
        (0, 5, GOOD, GOOD, []),  # first root is not the empty tree's
        (0, 5, EMPTY_ROOT, GOOD, [GOOD]),
        (6, 5, GOOD, GOOD, [GOOD]),
        (3, 5, GOOD, GOOD, []),
        (-1, 5, GOOD, GOOD, []),
        (3, 5, GOOD, b"short", [GOOD]),
        (3, 5, GOOD, GOOD, [GOOD] * 129),
    ]:
        with pytest.raises(ProofError):
            verify_consistency(*args)  # type: ignore[arg-type]
