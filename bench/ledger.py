"""Benchmark: the access log's durable appends and inclusion proofs, govern versus pymerkle.

One run, side by side, one JSON line on stdout (also written to bench/results/ledger.json):

(a) Durable appends/s. APPENDERS threads append APPEND_N entries through govern's Ledger; each
    call returns only once its entry is committed, and calls that arrive together share one
    commit (group commit). SQLite (WAL, synchronous=FULL) and PostgreSQL (a fresh database on
    127.0.0.1:5432, created and dropped here). The peer, pymerkle, runs the same entries from
    the same threads: its SqliteTree (given the same WAL/FULL pragmas, kinder than its default
    rollback journal), and for PostgreSQL a tree built on pymerkle's BaseMerkleTree exactly as
    its SqliteTree is (pymerkle ships no PostgreSQL backend). Two peer figures: append_entry
    per entry (one commit each: pymerkle has no group commit), and append_entries in batches of
    APPENDERS (the best any batching could give it).
(b) Inclusion-proof latency at 1M leaves. The 1M-leaf trees are built with large batches
    (10k entries per durable commit) because 1M single durable appends per backend would
    take minutes; govern then serves PROOFS random inclusion proofs at tree size 1M from the
    store (O(log n) stored nodes, one query), and pymerkle from the same leaf bytes (it
    recomputes subtrees from stored leaf hashes, with an LRU cache of subroots); each side stops
    after PROOF_SECONDS and the JSON says how many proofs it timed. Both trees must have the
    same root (same RFC 6962 hashing) and the same audit paths.
(c) The same two measures with both logs in memory, which isolates the tree code from storage.
"""

from __future__ import annotations

import dataclasses
import json
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from pymerkle import BaseMerkleTree, InmemoryTree, SqliteTree
from report import emit
from sqlalchemy import select

from govern.events import DecisionMade
from govern.ledger.merkle import MemoryNodeStore, MerkleLog, leaf_hash, verify_inclusion
from govern.ledger.service import Ledger
from govern.store.db import Database
from govern.store.migrate import upgrade
from govern.store.models import LedgerEntry

APPENDERS = 128
APPEND_N = 160 * APPENDERS  # 20,480, the same number from every thread
TREE_N = 1_000_000
BUILD_BATCH = 10_000
PROOFS = 2_000
PROOF_SECONDS = 40.0  # per side and backend: proofs stop after this, counted in the JSON
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
ENTRY = {
    "dataset": "patient_notes",
    "purpose": "training",
    "decision": "allow",
    "policy_version": 3,
    "row_filter": "region = 'eu' AND consent_research",
    "columns": ["note_id", "patient_id", "region", "text"],
}
# What govern appends: ENTRY as the typed event a decision is logged as.
DECISION = DecisionMade(
    subject="t",
    dataset="patient_notes",
    dataset_version=1,
    purpose="training",
    decision="allow",
    row_filter="region = 'eu' AND consent_research",
    row_filter_ast=None,
    columns={"note_id": "keep", "patient_id": "keep", "region": "keep", "text": "keep"},
    obligations=(),
    policy_version=3,
    reasons=(),
)


# -- pymerkle on PostgreSQL, the way pymerkle's own SqliteTree is written -------------------------


class PgTree(BaseMerkleTree):  # type: ignore[misc]
    def __init__(self, url: str, **opts: Any) -> None:
        self.con = psycopg.connect(url)
        with self.con.transaction():
            self.con.execute(
                "CREATE TABLE IF NOT EXISTS leaf "
                "(id BIGSERIAL PRIMARY KEY, entry BYTEA, hash BYTEA)"
            )
        super().__init__("sha256", **opts)

    def _encode_entry(self, data: bytes) -> bytes:
        return data

    def _store_leaf(self, data: bytes, digest: bytes) -> int:
        with self.con.transaction():
            row = self.con.execute(
                "INSERT INTO leaf (entry, hash) VALUES (%s, %s) RETURNING id", (data, digest)
            ).fetchone()
        assert row is not None
        return int(row[0])

    def append_entries(self, entries: Iterable[bytes], chunksize: int = 100_000) -> int:
        with self.lock, self.con.transaction(), self.con.cursor() as cur:
            chunk: list[tuple[bytes, bytes]] = []
            for data in entries:
                chunk.append((data, self.hash_buff(data)))
                if len(chunk) >= chunksize:
                    cur.executemany("INSERT INTO leaf (entry, hash) VALUES (%s, %s)", chunk)
                    chunk = []
            if chunk:
                cur.executemany("INSERT INTO leaf (entry, hash) VALUES (%s, %s)", chunk)
        return int(self._get_size())

    def _get_leaf(self, index: int) -> bytes:
        row = self.con.execute("SELECT hash FROM leaf WHERE id = %s", (index,)).fetchone()
        assert row is not None
        return bytes(row[0])

    def _get_leaves(self, offset: int, width: int) -> list[bytes]:
        rows = self.con.execute(
            "SELECT hash FROM leaf WHERE id BETWEEN %s AND %s ORDER BY id",
            (offset + 1, offset + width),
        ).fetchall()
        return [bytes(r[0]) for r in rows]

    def _get_size(self) -> int:
        row = self.con.execute("SELECT COALESCE(MAX(id), 0) FROM leaf").fetchone()
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        self.con.close()


def sqlite_tree(path: Path) -> SqliteTree:
    tree = SqliteTree(str(path))
    tree.con.execute("PRAGMA journal_mode=WAL")
    tree.con.execute("PRAGMA synchronous=FULL")
    return tree


# -- helpers --------------------------------------------------------------------------------------


@contextmanager
def pg_database(tag: str) -> Iterator[tuple[str, str]]:
    """A fresh database: (SQLAlchemy URL, libpq URL); dropped afterwards."""
    name = f"govern_bench_{tag}_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
            f"postgresql://postgres@127.0.0.1:5432/{name}",
        )
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def concurrently(n: int, threads: int, one: Callable[[int], object]) -> float:
    """Run one(i) for i in range(n) from ``threads`` threads; entries per second."""
    per = n // threads

    def work(t: int) -> None:
        for i in range(t * per, (t + 1) * per):
            one(i)

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    return per * threads / (time.perf_counter() - start)


def quantiles_ms(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=100)
    return {
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "mean_ms": statistics.mean(samples) * 1000,
    }


def timed_proofs(prove: Callable[[int], object], indexes: list[int], budget: float) -> list[float]:
    samples = []
    deadline = time.perf_counter() + budget
    for i in indexes:
        t0 = time.perf_counter()
        prove(i)
        samples.append(time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            break
    return samples


def leaf_bytes(db: Database, limit: int) -> list[bytes]:
    """The exact leaves govern stored, to give pymerkle the very same bytes."""
    out: list[bytes] = []
    with db.engine.connect() as conn:
        result = conn.execution_options(yield_per=50_000).execute(
            select(LedgerEntry.leaf).order_by(LedgerEntry.idx).limit(limit)
        )
        out.extend(bytes(row[0]) for row in result)
    return out


# -- (a) durable appends --------------------------------------------------------------------------


def govern_appends(url: str, home: Path) -> dict[str, float]:
    upgrade(url)
    db = Database(url)
    ledger = Ledger(db, home / "ledger.pem", "bench.local/ledger")
    try:
        rate = concurrently(APPEND_N, APPENDERS, lambda i: ledger.append(DECISION, "t"))
        assert ledger.refresh() == APPEND_N // APPENDERS * APPENDERS
        return {"appends_per_s": rate}
    finally:
        ledger.close()
        db.dispose()


def peer_appends(make: Callable[[], Any], leaves: list[bytes]) -> dict[str, float]:
    tree = make()
    try:
        single = concurrently(len(leaves), APPENDERS, lambda i: tree.append_entry(leaves[i]))
    finally:
        tree.close()
    tree = make()
    try:
        start = time.perf_counter()
        for first in range(0, len(leaves), APPENDERS):
            tree.append_entries(leaves[first : first + APPENDERS])
        batched = len(leaves) / (time.perf_counter() - start)
    finally:
        tree.close()
    return {"appends_per_s": single, "batched_appends_per_s": batched}


# -- (b) proofs at 1M -----------------------------------------------------------------------------


def govern_build(ledger: Ledger, n: int) -> float:
    start = time.perf_counter()
    for first in range(0, n, BUILD_BATCH):
        ledger.append_many(
            [
                # A distinct entry each, as {**ENTRY, "i": i} is on the in-memory side.
                (dataclasses.replace(DECISION, dataset_version=i), "t")
                for i in range(first, min(n, first + BUILD_BATCH))
            ]
        )
    return time.perf_counter() - start


def proofs_side_by_side(
    ledger: Ledger, peer: Any, leaves: list[bytes], indexes: list[int]
) -> dict[str, Any]:
    n = len(leaves)
    start = time.perf_counter()
    peer.append_entries(leaves)
    peer_build_s = time.perf_counter() - start

    root = ledger.tree.root(n)
    ours = timed_proofs(lambda i: ledger.inclusion_proof(i, n), indexes, PROOF_SECONDS)
    theirs = timed_proofs(lambda i: peer.prove_inclusion(i + 1, n), indexes, PROOF_SECONDS)
    # Same hashing, same answers: equal roots and audit paths (pymerkle's path starts with the
    # leaf hash itself).
    for i in indexes[:5]:
        path = ledger.inclusion_proof(i, n)
        verify_inclusion(leaf_hash(leaves[i]), i, n, path, root)
        theirs_path = [bytes.fromhex(h) for h in peer.prove_inclusion(i + 1, n).serialize()["path"]]
        assert theirs_path[1:] == path, "pymerkle and govern disagree on an audit path"
    assert peer.get_root(n) == root, "pymerkle and govern disagree on the root"
    return {
        "govern": {"proofs": len(ours), **quantiles_ms(ours)},
        "pymerkle": {
            "proofs": len(theirs),
            **quantiles_ms(theirs),
            "first_proof_ms": theirs[0] * 1000,
            "build_seconds": peer_build_s,
        },
    }


def stored_backend(name: str, url: str, peer_make: Callable[[], Any], home: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["govern_appends"] = govern_appends(url, home)
    db = Database(url)
    leaves = leaf_bytes(db, APPEND_N)
    db.dispose()
    out["pymerkle_appends"] = peer_appends(peer_make, leaves)
    out["append_ratio"] = (
        out["govern_appends"]["appends_per_s"] / out["pymerkle_appends"]["appends_per_s"]
    )
    out["append_ratio_vs_batched_peer"] = (
        out["govern_appends"]["appends_per_s"] / out["pymerkle_appends"]["batched_appends_per_s"]
    )
    return out


def proofs_backend(
    name: str, url: str, peer_make: Callable[[], Any], home: Path, indexes: list[int]
) -> dict[str, Any]:
    upgrade(url)
    db = Database(url)
    ledger = Ledger(db, home / "ledger.pem", "bench.local/ledger")
    try:
        build_s = govern_build(ledger, TREE_N)
        leaves = leaf_bytes(db, TREE_N)
        peer = peer_make()
        try:
            result = proofs_side_by_side(ledger, peer, leaves, indexes)
        finally:
            peer.close()
        result["govern"]["build_seconds"] = build_s
        result["govern"]["build_appends_per_s"] = TREE_N / build_s
        result["p50_ratio"] = result["pymerkle"]["p50_ms"] / result["govern"]["p50_ms"]
        result["p99_ratio"] = result["pymerkle"]["p99_ms"] / result["govern"]["p99_ms"]
        return result
    finally:
        ledger.close()
        db.dispose()


def memory_side_by_side(indexes: list[int]) -> dict[str, Any]:
    leaves = [json.dumps({**ENTRY, "i": i}, separators=(",", ":")).encode() for i in range(TREE_N)]
    log = MerkleLog(MemoryNodeStore())
    start = time.perf_counter()
    for first in range(0, TREE_N, BUILD_BATCH):
        log.append_many(leaves[first : first + BUILD_BATCH])
    ours_build = time.perf_counter() - start
    peer = InmemoryTree()
    start = time.perf_counter()
    peer.append_entries(leaves)
    theirs_build = time.perf_counter() - start
    assert peer.get_root(TREE_N) == log.root()
    ours = timed_proofs(lambda i: log.inclusion_proof(i, TREE_N), indexes, PROOF_SECONDS)
    theirs = timed_proofs(lambda i: peer.prove_inclusion(i + 1, TREE_N), indexes, PROOF_SECONDS)
    return {
        "govern": {"appends_per_s": TREE_N / ours_build, **quantiles_ms(ours)},
        "pymerkle": {"appends_per_s": TREE_N / theirs_build, **quantiles_ms(theirs)},
        "append_ratio": theirs_build / ours_build,
        "p50_ratio": statistics.median(theirs) / statistics.median(ours),
    }


def main() -> None:
    started = time.perf_counter()
    rng = random.Random(7)
    indexes = [rng.randrange(TREE_N) for _ in range(PROOFS)]
    result: dict[str, Any] = {
        "bench": "ledger",
        "appenders": APPENDERS,
        "append_entries": APPEND_N,
        "tree_size": TREE_N,
        "tree_built_with": f"durable batches of {BUILD_BATCH} entries (append_many)",
    }
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        result["sqlite"] = stored_backend(
            "sqlite",
            f"sqlite:///{home / 'appends.db'}",
            lambda: sqlite_tree(home / f"peer-{secrets.token_hex(3)}.db"),
            home,
        )
        with pg_database("appends") as (url, _), pg_database("peer") as (_, peer_url):

            def pg_peer() -> PgTree:
                tree = PgTree(peer_url)
                with tree.con.transaction():
                    tree.con.execute("TRUNCATE leaf RESTART IDENTITY")
                return tree

            result["postgres"] = stored_backend("postgres", url, pg_peer, home)
        result["sqlite"]["proofs_1m"] = proofs_backend(
            "sqlite",
            f"sqlite:///{home / 'tree.db'}",
            lambda: sqlite_tree(home / "peer-tree.db"),
            home,
            indexes,
        )
        with pg_database("tree") as (url, _), pg_database("peertree") as (_, peer_url):
            result["postgres"]["proofs_1m"] = proofs_backend(
                "postgres", url, lambda: PgTree(peer_url), home, indexes
            )
    result["memory_1m"] = memory_side_by_side(indexes)
    result["goal_10k_durable_appends_per_s"] = {
        name: result[name]["govern_appends"]["appends_per_s"] >= 10_000
        for name in ("sqlite", "postgres")
    }
    result["goal_proof_under_1ms_at_1m"] = {
        name: result[name]["proofs_1m"]["govern"]["p99_ms"] < 1.0 for name in ("sqlite", "postgres")
    }
    result["seconds"] = time.perf_counter() - started
    emit("ledger", result)


if __name__ == "__main__":
    main()
