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
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import select

from govern.errors import Conflict, GovernError, NotFound, Unavailable
from govern.events import Event
from govern.ledger.canonical import JSONValue, entry_leaf_bytes, parse_leaf
from govern.ledger.checkpoint import (
    Checkpoint,
    NoteSigner,
    load_or_create_key_file,
    sign_checkpoint,
)
from govern.ledger.merkle import MerkleLog
from govern.ledger.sqlstore import SqlNodeStore, StagedLeaf
from govern.ledger.verify import Bundle
from govern.store.db import Database
from govern.store.models import LedgerCheckpoint, LedgerEntry, LedgerNode, as_utc
from govern.store.stamp import bump_stamp

__all__ = ["Committed", "Ledger", "LedgerUnavailable", "StoredCheckpoint", "Tx"]

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


_Item = tuple[list[StagedLeaf], Future[int]]

T = TypeVar("T")


@dataclass(frozen=True)
class Committed(Generic[T]):
    """What ``Ledger.transact`` returns: the change's own result and where its events went."""

    value: T
    first_index: int
    count: int

    @property
    def last_index(self) -> int:
        return self.first_index + self.count - 1


class Tx:
    """The events of one change, written to the log in the change's own store transaction.

    ``emit`` queues an event; ``after_commit`` queues work that must wait until the change and
    its events are durable (swapping a policy into memory, waking a worker)."""

    def __init__(self, actor: str) -> None:
        self.actor = actor
        self.events: list[tuple[Event, str]] = []
        self._after: list[Callable[[], object]] = []
        self._undo: list[Callable[[], object]] = []
        self.unchanged = False

    def emit(self, event: Event, *, actor: str | None = None) -> None:
        self.events.append((event, actor or self.actor))

    def after_commit(self, fn: Callable[[], object]) -> None:
        self._after.append(fn)

    def on_rollback(self, fn: Callable[[], object]) -> None:
        """Undo a step outside the store (a file renamed into place) if the change fails."""
        self._undo.append(fn)

    def no_change(self) -> None:
        """The change found nothing to do (the same request again, a compare-and-set lost):
        it is rolled back and no event is written."""
        self.unchanged = True


class _AppendConflict(Exception):
    pass


class _Unchanged(Exception):
    def __init__(self, value: object) -> None:
        self.value = value


class Ledger:
    def __init__(self, db: Database, key_path: Path, origin: str) -> None:
        self.db = db
        self.origin = origin
        self.signer = NoteSigner(origin, load_or_create_key_file(key_path))
        self.store = SqlNodeStore(db)
        # Loaded on first use: the store may be down when a gateway opens, and /readyz must
        # still be able to say so.
        self._tree: MerkleLog | None = None
        self._tree_lock = threading.Lock()
        # Held while leaves are added to the tree: by the writer thread for each batch and by
        # a command for its whole transaction, so the two never interleave.
        self._append_lock = threading.Lock()
        self._local = threading.local()
        self._stale = False
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="ledger-writer", daemon=True)
        self._writer.start()
        self._checkpoint_lock = threading.Lock()

    @property
    def tree(self) -> MerkleLog:
        """The Merkle tree over the store (its edge read from the store on first use)."""
        tree = self._tree
        if tree is None:
            with self._tree_lock:
                if self._tree is None:
                    self._tree = MerkleLog(self.store)
                tree = self._tree
        return tree

    # -- changes with their events --------------------------------------------------------------

    def transact(self, actor: str, change: Callable[[Tx], T]) -> Committed[T]:
        """Run ``change`` and append the events it emits, in one store transaction: the change
        takes effect exactly when its events are durable, and neither without the other.

        ``change`` makes its store writes through the parts' ordinary sessions, which join the
        transaction; it must emit at least one event. It may run more than once (when another
        process appended to the log meanwhile), so it must not act outside the store; work
        for after the commit goes to ``Tx.after_commit``. A ``transact`` inside ``change``
        joins the outer one. Raises LedgerUnavailable (503) when the log cannot be written,
        and whatever ``change`` raised; in both cases nothing was changed.
        """
        if getattr(self._local, "tx", None) is not None:
            raise GovernError("changes do not nest: emit on the Tx of the change in progress")
        for _ in range(_CONFLICT_RETRIES):
            tx = Tx(actor)
            with self._append_lock:
                self._local.tx = tx
                try:
                    value, first = self._transact_once(tx, change)
                except _Unchanged as nothing:
                    _undo(tx)
                    return Committed(nothing.value, -1, 0)  # type: ignore[arg-type]
                except _AppendConflict:
                    self._mark_stale()
                    _undo(tx)
                    continue
                except BaseException:
                    self._mark_stale()
                    _undo(tx)
                    raise
                finally:
                    self._local.tx = None
            for fn in tx._after:
                try:
                    fn()
                except Exception:
                    log.exception("after-commit step of a %s change failed", actor)
            return Committed(value, first, len(tx.events))
        raise LedgerUnavailable("the access log is contended; try again")

    def _transact_once(self, tx: Tx, change: Callable[[Tx], T]) -> tuple[T, int]:
        with self.db.transaction("command") as conn:
            self._catch_up()
            value = change(tx)
            if tx.unchanged:
                if tx.events:
                    raise GovernError("a change that made no change emitted events")
                raise _Unchanged(value)
            if not tx.events:
                raise GovernError(
                    "a change must write at least one event; this one wrote none, so it was "
                    "not made"
                )
            # Caches filled before this change stop being trusted once it commits.
            bump_stamp(conn)
            try:
                now = _now()
                leaves = [_staged(event, actor, now) for event, actor in tx.events]
                self.store.stage(leaves)
                return value, self.tree.append_many([s.leaf for s in leaves])
            except Conflict as exc:
                # Another process appended first: the whole change is tried again.
                raise _AppendConflict() from exc
            except GovernError:
                raise
            except Exception as exc:
                raise LedgerUnavailable(
                    "the access log could not record this change; nothing was changed"
                ) from exc

    def _catch_up(self) -> None:
        """Make the in-memory tree edge match the store (after another process appended, or
        after a transaction that failed once its leaves were counted)."""
        if self._stale or self.tree.size != self.store.size():
            self.tree.refresh()
            self._stale = False

    def _mark_stale(self) -> None:
        self._stale = True

    # -- appending decisions and reads ----------------------------------------------------------

    def append(self, event: Event, actor: str) -> int:
        return self.append_many([(event, actor)])

    def append_many(self, entries: Sequence[tuple[Event, str]]) -> int:
        """Append entries durably; returns the index of the first. Raises LedgerUnavailable.

        For entries that change nothing in the store (decisions). Group-committed with other
        callers' entries; a change must use ``transact`` instead."""
        if getattr(self._local, "tx", None) is not None:
            raise GovernError("append inside a change: emit the event on its Tx instead")
        now = _now()
        leaves = [_staged(event, actor, now) for event, actor in entries]
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
            with self._append_lock:
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

    def _append_with_retry(self, leaves: list[StagedLeaf]) -> int:
        for _ in range(_CONFLICT_RETRIES):
            try:
                if self._stale:
                    self.tree.refresh()
                    self._stale = False
                self.store.stage(leaves)
                return self.tree.append_many([s.leaf for s in leaves])
            except Conflict:
                # Another process appended: catch up with the store and try again.
                self._mark_stale()
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

    def leaves(
        self,
        start: int,
        limit: int,
        *,
        actor: str | None = None,
        kind: str | None = None,
        object_ref: str | None = None,
        kinds: Sequence[str] | None = None,
        object_prefix: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        newest_first: bool = False,
    ) -> list[tuple[int, bytes]]:
        """(index, leaf) matching every filter given: from ``start`` on, oldest first, or
        (``newest_first``) below ``start`` when it is above 0, newest first. ``since`` and
        ``until`` bound the append time."""
        q = select(LedgerEntry.idx, LedgerEntry.leaf)
        if newest_first:
            if start > 0:
                q = q.where(LedgerEntry.idx < start)
        else:
            q = q.where(LedgerEntry.idx >= start)
        if actor is not None:
            q = q.where(LedgerEntry.actor == actor)
        if kind is not None:
            q = q.where(LedgerEntry.kind == kind)
        if kinds is not None:
            q = q.where(LedgerEntry.kind.in_(list(kinds)))
        if object_ref is not None:
            q = q.where(LedgerEntry.object == object_ref)
        if object_prefix is not None:
            # The prefix is matched literally: LIKE's wildcards in it are escaped.
            escaped = object_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            q = q.where(LedgerEntry.object.like(escaped + "%", escape="\\"))
        if since is not None:
            q = q.where(LedgerEntry.created_at >= since)
        if until is not None:
            q = q.where(LedgerEntry.created_at < until)
        order = LedgerEntry.idx.desc() if newest_first else LedgerEntry.idx
        with self.db.session() as s:
            rows = s.execute(q.order_by(order).limit(limit))
            return [(int(i), bytes(leaf)) for i, leaf in rows]

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        return self.tree.inclusion_proof(index, tree_size)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return self.tree.consistency_proof(first, second)

    # -- checkpoints ----------------------------------------------------------------------------

    def checkpoint(self) -> StoredCheckpoint:
        """The signed head at the current size, signing one if the log grew since the last."""
        with self._checkpoint_lock:
            with self._append_lock:  # not while a change's leaves are counted but uncommitted
                size = self.tree.refresh()
                root = self.tree.root(size)
            latest = self.latest_checkpoint()
            if latest is not None and latest.tree_size == size:
                return latest
            note = sign_checkpoint(Checkpoint(self.origin, size, root), self.signer)
            now = datetime.now(UTC)
            try:
                with self.db.begin("ledger"), self.db.session() as s:
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
    created = as_utc(created)
    return StoredCheckpoint(int(row.tree_size), bytes(row.root_hash), row.note, created)


def _undo(tx: Tx) -> None:
    for fn in reversed(tx._undo):
        try:
            fn()
        except Exception:
            log.exception("undoing a step of a failed change failed")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _staged(event: Event, actor: str, now: str) -> StagedLeaf:
    ref = event.object_ref()
    entry: dict[str, JSONValue] = {
        "kind": event.kind,
        "time": now,
        "actor": actor,
        "object": ref,
        "data": event.to_data(),
    }
    leaf = entry_leaf_bytes(entry)
    return StagedLeaf(leaf, event.kind, _searchable(actor, 200), _searchable(ref, 300))


def _searchable(text: str, size: int) -> str:
    """The leaf's text as its search columns can hold it: PostgreSQL text refuses NUL, and one
    refused row would fail the whole group commit, other callers' entries with it. The leaf
    itself keeps the exact text."""
    return text.replace("\x00", "\ufffd")[:size]
