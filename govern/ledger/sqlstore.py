"""The Merkle log's NodeStore over SQLAlchemy, writing entries and nodes in one transaction."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime

from sqlalchemy import func, insert, select, tuple_
from sqlalchemy.exc import IntegrityError

from govern.errors import Conflict
from govern.ledger.merkle import NodeKey
from govern.store.db import Database
from govern.store.models import LedgerEntry, LedgerNode

__all__ = ["SqlNodeStore"]

_CHUNK = 500  # keys per IN (...) query, well under every driver's parameter limit


class SqlNodeStore:
    """A NodeStore whose ``put_many`` also inserts the entries staged for the same batch.

    Entry rows and node rows commit together or not at all, so the tree never covers an entry
    that is not stored, and an entry never exists outside the tree. A concurrent writer that
    got there first makes the primary keys clash: that surfaces as Conflict, as the NodeStore
    protocol asks.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._staged: list[tuple[bytes, str]] = []

    def stage(self, entries: Sequence[tuple[bytes, str]]) -> None:
        """(leaf bytes, kind) for the leaves of the next put_many, in order."""
        self._staged = list(entries)

    def get_many(self, keys: Collection[NodeKey]) -> dict[NodeKey, bytes]:
        wanted = list(keys)
        out: dict[NodeKey, bytes] = {}
        with self.db.session() as s:
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i : i + _CHUNK]
                rows = s.execute(
                    select(LedgerNode.level, LedgerNode.idx, LedgerNode.hash).where(
                        tuple_(LedgerNode.level, LedgerNode.idx).in_(chunk)
                    )
                )
                out.update({(lv, ix): bytes(h) for lv, ix, h in rows})
        return out

    def put_many(self, items: Mapping[NodeKey, bytes]) -> None:
        leaves = sorted(ix for lv, ix in items if lv == 0)
        if len(leaves) != len(self._staged):
            raise Conflict("staged entries do not match the leaves being stored")
        now = datetime.now(UTC)
        try:
            with self.db.session() as s:
                if leaves:
                    s.execute(
                        insert(LedgerEntry),
                        [
                            {"idx": ix, "leaf": leaf, "kind": kind, "created_at": now}
                            for ix, (leaf, kind) in zip(leaves, self._staged, strict=True)
                        ],
                    )
                s.execute(
                    insert(LedgerNode),
                    [{"level": lv, "idx": ix, "hash": h} for (lv, ix), h in items.items()],
                )
        except IntegrityError as exc:
            raise Conflict("the log was appended to by another writer") from exc
        finally:
            self._staged = []

    def size(self) -> int:
        with self.db.session() as s:
            top = s.scalar(select(func.max(LedgerNode.idx)).where(LedgerNode.level == 0))
        return 0 if top is None else int(top) + 1
