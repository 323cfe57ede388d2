"""The access log as a service: durable appends with group commit, entries, proofs and signed
checkpoints.

Appends are serialised through one writer thread. Callers hand it entries and wait; the writer
takes everything queued (up to a batch) and commits it in one transaction, so concurrent
requests share a commit instead of queueing for one each. A caller returns only after its
entry is durable (invariant 2: no entry, no answer).
"""

from __future__ import annotations

import base64
import logging
import queue
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from govern.errors import Conflict, GovernError, NotFound, Unavailable
from govern.ledger.canonical import entry_leaf_bytes, parse_leaf
from govern.ledger.checkpoint import (
    Checkpoint,
    NoteSigner,
    load_or_create_key_file,
    sign_checkpoint,
)
from govern.ledger.merkle import MerkleLog
from govern.ledger.sqlstore import SqlNodeStore
from govern.ledger.verify import Bundle
from govern.store.db import Database
from govern.store.models import LedgerCheckpoint, LedgerEntry, LedgerNode

__all__ = ["Ledger", "LedgerUnavailable", "StoredCheckpoint"]

log = logging.getLogger("govern.ledger")

_MAX_BATCH = 2000
_CONFLICT_RETRIES = 8


class LedgerUnavailable(Unavailable):
    code = "ledger_unavailable"


@dataclass(frozen=True)
class StoredCheckpoint:
    tree_size: int
    root_hash: bytes
    note: str
    timestamp: datetime

    def to_json(self, anchors: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        sig_line = self.note.rstrip("\n").splitlines()[-1]
        return {
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "timestamp": self.timestamp.isoformat(),
            "signature": sig_line.split(" ")[-1],
            "note": self.note,
            "anchors": list(anchors),
        }


_Item = tuple[list[tuple[bytes, str]], Future[int]]


class Ledger:
    def __init__(self, db: Database, key_path: Path, origin: str) -> None:
        self.db = db
        self.origin = origin
        self.signer = NoteSigner(origin, load_or_create_key_file(key_path))
        self.store = SqlNodeStore(db)
        self.tree = MerkleLog(self.store)
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="ledger-writer", daemon=True)
        self._writer.start()
        self._checkpoint_lock = threading.Lock()

    # -- appending ------------------------------------------------------------------------------

    def append(self, kind: str, data: Mapping[str, Any], actor: str) -> int:
        return self.append_many([(kind, data, actor)])

    def append_many(self, entries: Sequence[tuple[str, Mapping[str, Any], str]]) -> int:
        """Append entries durably; returns the index of the first. Raises LedgerUnavailable."""
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        leaves = [
            (
                entry_leaf_bytes({"kind": kind, "time": now, "actor": actor, "data": dict(data)}),
                kind,
            )
            for kind, data, actor in entries
        ]
        done: Future[int] = Future()
        self._queue.put((leaves, done))
        try:
            return done.result(timeout=30)
        except GovernError:
            raise
        except Exception as exc:
            raise LedgerUnavailable(
                "the access log could not record this; nothing was served"
            ) from exc

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < _MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[_Item]) -> None:
        leaves = [leaf for entries, _ in batch for leaf in entries]
        try:
            start = self._append_with_retry(leaves)
        except Exception as exc:
            log.exception("ledger append failed")
            for _, fut in batch:
                fut.set_exception(exc)
            return
        offset = start
        for entries, fut in batch:
            fut.set_result(offset)
            offset += len(entries)

    def _append_with_retry(self, leaves: list[tuple[bytes, str]]) -> int:
        for _ in range(_CONFLICT_RETRIES):
            self.store.stage(leaves)
            try:
                return self.tree.append_many([leaf for leaf, _ in leaves])
            except Conflict:
                # Another process appended: catch up with the store and try again.
                self.tree.refresh()
        raise LedgerUnavailable("the access log is contended; try again")

    # -- reading --------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self.tree.size

    def refresh(self) -> int:
        return self.tree.refresh()

    def leaf(self, index: int) -> bytes:
        if index < 0:
            raise NotFound("entry indexes start at 0", details={"index": index})
        with self.db.session() as s:
            row = s.get(LedgerEntry, index)
            if row is None:
                raise NotFound(f"no ledger entry {index}", details={"index": index})
            return bytes(row.leaf)

    def entry(self, index: int) -> tuple[dict[str, Any], bytes]:
        leaf = self.leaf(index)
        return parse_leaf(leaf), leaf

    def leaves(self, start: int, limit: int) -> list[tuple[int, bytes]]:
        with self.db.session() as s:
            rows = s.execute(
                select(LedgerEntry.idx, LedgerEntry.leaf)
                .where(LedgerEntry.idx >= start)
                .order_by(LedgerEntry.idx)
                .limit(limit)
            )
            return [(int(i), bytes(leaf)) for i, leaf in rows]

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        return self.tree.inclusion_proof(index, tree_size)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return self.tree.consistency_proof(first, second)

    # -- checkpoints ----------------------------------------------------------------------------

    def checkpoint(self) -> StoredCheckpoint:
        """The signed head at the current size, signing one if the log grew since the last."""
        with self._checkpoint_lock:
            size = self.tree.refresh()
            latest = self.latest_checkpoint()
            if latest is not None and latest.tree_size == size:
                return latest
            root = self.tree.root(size)
            note = sign_checkpoint(Checkpoint(self.origin, size, root), self.signer)
            now = datetime.now(UTC)
            try:
                with self.db.session() as s:
                    s.add(
                        LedgerCheckpoint(tree_size=size, root_hash=root, note=note, created_at=now)
                    )
            except Exception:
                existing = self.checkpoint_at(size)
                if existing is None:
                    raise
                return existing
            return StoredCheckpoint(size, root, note, now)

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        with self.db.session() as s:
            row = s.scalar(
                select(LedgerCheckpoint).order_by(LedgerCheckpoint.tree_size.desc()).limit(1)
            )
            return _stored(row) if row is not None else None

    def checkpoint_at(self, tree_size: int) -> StoredCheckpoint | None:
        with self.db.session() as s:
            row = s.get(LedgerCheckpoint, tree_size)
            return _stored(row) if row is not None else None

    def checkpoints(self) -> list[StoredCheckpoint]:
        with self.db.session() as s:
            rows = s.scalars(select(LedgerCheckpoint).order_by(LedgerCheckpoint.tree_size))
            return [_stored(r) for r in rows]

    def public_key(self) -> dict[str, str]:
        return {
            "origin": self.origin,
            "vkey": self.signer.vkey,
            "public_key": base64.b64encode(self.signer.verifier.public_key_bytes).decode(),
            "algorithm": "ed25519",
        }

    def bundle(self) -> Bundle:
        """Everything an offline verifier needs, read from the store."""
        with self.db.session() as s:
            leaves = [
                bytes(x) for x in s.scalars(select(LedgerEntry.leaf).order_by(LedgerEntry.idx))
            ]
            hashes = [
                bytes(h)
                for h in s.scalars(
                    select(LedgerNode.hash).where(LedgerNode.level == 0).order_by(LedgerNode.idx)
                )
            ]
        return Bundle(
            origin=self.origin,
            vkey=self.signer.vkey,
            leaves=leaves,
            leaf_hashes=hashes,
            checkpoints=[c.note for c in self.checkpoints()],
        )

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join(timeout=10)


def _stored(row: LedgerCheckpoint) -> StoredCheckpoint:
    created = row.created_at
    if created.tzinfo is None:  # SQLite returns naive datetimes
        created = created.replace(tzinfo=UTC)
    return StoredCheckpoint(int(row.tree_size), bytes(row.root_hash), row.note, created)
