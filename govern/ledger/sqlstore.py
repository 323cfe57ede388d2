"""The Merkle log's NodeStore over SQLAlchemy, writing entries and nodes in one transaction."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy import Table, TextClause, func, select, text
from sqlalchemy.exc import IntegrityError

from govern.errors import Conflict
from govern.ledger.merkle import NodeKey
from govern.store.db import Database, store_errors
from govern.store.models import LedgerEntry, LedgerNode

__all__ = ["SqlNodeStore", "StagedLeaf"]

_CHUNK = 100  # keys per query: proofs need at most ~2 log2(n), so one query each
_NODES: Table = LedgerNode.__table__  # type: ignore[assignment]
_ENTRIES: Table = LedgerEntry.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class StagedLeaf:
    """A leaf and the columns stored beside it, so the log can be searched without parsing."""

    leaf: bytes
    kind: str
    actor: str
    object: str


@lru_cache(maxsize=_CHUNK)
def _select_nodes(count: int) -> TextClause:
    # An OR of primary-key equalities, one statement text per key count so drivers and the
    # database reuse the plan: SQLite does not use the primary key for a row-value IN, and
    # building the statement in SQLAlchemy each time cost more than the lookup itself.
    terms = " OR ".join(f"(level = :l{n} AND idx = :i{n})" for n in range(count))
    return text(f"SELECT level, idx, hash FROM ledger_nodes WHERE {terms}")  # noqa: S608


class SqlNodeStore:
    """A NodeStore whose ``put_many`` also inserts the entries staged for the same batch.

    Entry rows and node rows commit together or not at all, so the tree never covers an entry
    that is not stored, and an entry never exists outside the tree. A concurrent writer that
    got there first makes the primary keys clash: that surfaces as Conflict, as the NodeStore
    protocol asks.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._staged: list[StagedLeaf] = []

    def stage(self, entries: Sequence[StagedLeaf]) -> None:
        """The leaves of the next put_many, in order."""
        self._staged = list(entries)

    def get_many(self, keys: Collection[NodeKey]) -> dict[NodeKey, bytes]:
        wanted = list(keys)
        out: dict[NodeKey, bytes] = {}
        with self.db.session() as s:
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i : i + _CHUNK]
                params: dict[str, int] = {}
                for n, (level, idx) in enumerate(chunk):
                    params[f"l{n}"] = level
                    params[f"i{n}"] = idx
                rows = s.execute(_select_nodes(len(chunk)), params)
                out.update({(lv, ix): bytes(h) for lv, ix, h in rows})
        return out

    def put_many(self, items: Mapping[NodeKey, bytes]) -> None:
        leaves = sorted(ix for lv, ix in items if lv == 0)
        if len(leaves) != len(self._staged):
            raise Conflict("staged entries do not match the leaves being stored")
        now = datetime.now(UTC)
        try:
            # Core executemany, not the ORM's bulk insert: the writer thread spent most of its
            # time in ORM bookkeeping.
            # Inside a command's transaction this joins it: the change and its entries commit
            # together.
            with store_errors(), self.db.begin("ledger") as conn:
                if leaves:
                    conn.execute(
                        _ENTRIES.insert(),
                        [
                            {
                                "idx": ix,
                                "leaf": s.leaf,
                                "kind": s.kind,
                                "actor": s.actor[:200],
                                "object": s.object[:300],
                                "created_at": now,
                            }
                            for ix, s in zip(leaves, self._staged, strict=True)
                        ],
                    )
                conn.execute(
                    _NODES.insert(),
                    [{"level": lv, "idx": ix, "hash": h} for (lv, ix), h in items.items()],
                )
        except IntegrityError as exc:
            raise Conflict("the log was appended to by another writer") from exc
        finally:
            self._staged = []

    def size(self) -> int:
        with self.db.session() as s:
            top = s.scalar(select(func.max(_NODES.c.idx)).where(_NODES.c.level == 0))
        return 0 if top is None else int(top) + 1
