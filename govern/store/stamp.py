"""The change stamp: a counter every change of state bumps, and the caches that trust it.

Every command bumps it in its own transaction (``Ledger.transact``), so a value read from the
store says exactly whether anything changed since: a cache entry filled at stamp ``n`` is good
while the stamp still reads ``n``, whichever process made the change. Reading it is one
primary-key lookup (tens of microseconds), far cheaper than the queries it spares, and a store
that cannot be read fails the read, so a cache never answers for a store that is down.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from sqlalchemy import Table, select, update
from sqlalchemy.engine import Connection

from govern.store.db import Database, store_errors
from govern.store.models import ChangeStamp

__all__ = ["StampedCache", "bump_stamp", "read_stamp"]

_TABLE: Table = ChangeStamp.__table__  # type: ignore[assignment]
_SELECT = select(_TABLE.c.n).where(_TABLE.c.id == 1)
_BUMP = update(_TABLE).where(_TABLE.c.id == 1).values(n=_TABLE.c.n + 1)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def read_stamp(db: Database) -> int:
    with store_errors(), db.engine.connect() as conn:
        value = conn.execute(_SELECT).scalar()
    return int(value or 0)


def bump_stamp(conn: Connection) -> None:
    """Within a change's transaction: the change is visible to caches once it commits."""
    conn.execute(_BUMP)


class StampedCache(Generic[K, V]):
    """A bounded LRU of values, each good while the change stamp has not moved.

    Inside a store transaction (a command reading what it is about to change) it is bypassed:
    what the transaction sees is not yet committed, so not yet the truth for anyone else."""

    def __init__(self, db: Database, size: int = 4096) -> None:
        self._db = db
        self._size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[K, tuple[int, V]] = OrderedDict()

    def get(self, key: K, load: Callable[[], V]) -> V:
        if self._db.in_transaction is not None:
            return load()
        stamp = read_stamp(self._db)
        with self._lock:
            found = self._items.get(key)
            if found is not None and found[0] == stamp:
                self._items.move_to_end(key)
                return found[1]
        value = load()
        with self._lock:
            self._items[key] = (stamp, value)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value
