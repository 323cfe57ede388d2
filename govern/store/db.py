"""The database handle: engine, sessions, transactions, and the mapping of driver failures to
govern errors.

A *guarded* database (the one a Gateway opens) refuses every INSERT, UPDATE and DELETE that does
not run inside a named writer's transaction (``transaction(writer)``): the command path
(``command``, which writes an event with every change, invariant 7) and the access log's own
bookkeeping (``ledger``: entries, tree nodes, checkpoints; ``provenance``: the row ids a read
delivered, covered by the read's entries). So a change that skips the command path fails in
tests and in production instead of going unlogged.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from govern.errors import BadRequest, GovernError, StoreUnavailable, UnloggedWrite

__all__ = ["Database", "Writer", "store_errors"]

Writer = Literal["command", "ledger", "provenance"]
_WRITER_KEY = "govern.writer"
_DML = ("INSERT", "UPDATE", "DELETE", "REPLAC", "UPSERT")


@contextmanager
def store_errors() -> Iterator[None]:
    """Turn a lost or refused database connection into StoreUnavailable (a 503, a deny), and a
    value the database refuses into BadRequest (a 400)."""
    try:
        yield
    except OperationalError as exc:
        raise StoreUnavailable(
            "the metadata store is unavailable", details={"cause": type(exc.orig).__name__}
        ) from exc
    except DataError as exc:
        # A value the database cannot hold (PostgreSQL text refuses NUL): the caller's input,
        # not the store, is at fault.
        raise BadRequest(
            "a value cannot be stored (a NUL character, or out of range)",
            details={"cause": type(exc.orig).__name__},
        ) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable("the metadata store connection was lost") from exc
        raise


class Database:
    """One engine per process; sessions are short and explicit."""

    def __init__(self, url: str, *, guarded: bool = False) -> None:
        self.url = url
        self.engine: Engine = _make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._local = threading.local()
        self.guarded = guarded
        if guarded:
            event.listen(self.engine, "before_cursor_execute", _refuse_unlogged_writes)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def in_transaction(self) -> Writer | None:
        """The writer whose transaction this thread is in, if any."""
        writer: Writer | None = getattr(self._local, "writer", None)
        return writer

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back on any error. Inside a
        ``transaction`` on this thread it joins that transaction instead, which commits or
        rolls back as a whole."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            with (
                store_errors(),
                Session(
                    bind=conn, join_transaction_mode="rollback_only", expire_on_commit=False
                ) as session,
            ):
                yield session
                session.commit()  # flushes; the connection's transaction stays open
            return
        with store_errors(), self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def transaction(self, writer: Writer) -> Iterator[Connection]:
        """One transaction on this thread, which every ``session()`` and ``begin()`` on the
        thread joins until it ends; committed when the block ends. On SQLite it takes the
        write lock at once (BEGIN IMMEDIATE), so reads inside it never go stale before its
        writes."""
        if getattr(self._local, "conn", None) is not None:
            raise GovernError("store transactions do not nest")
        with store_errors(), self.engine.connect() as conn:
            if self.is_sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.begin()
            conn.info[_WRITER_KEY] = writer
            self._local.conn, self._local.writer = conn, writer
            try:
                yield conn
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                self._local.conn = self._local.writer = None
                conn.info.pop(_WRITER_KEY, None)

    @contextmanager
    def begin(self, writer: Writer) -> Iterator[Connection]:
        """A Core connection in a transaction: this thread's open ``transaction`` if any
        (committed with it), else a new one as ``writer``."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            with store_errors():
                yield conn
            return
        with self.transaction(writer) as new:
            yield new

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold the store-wide lock ``name`` for the block, waiting for it: on PostgreSQL a
        session advisory lock, so replicas sharing the store take turns; on SQLite nothing
        (one process serves a SQLite store)."""
        if self.is_sqlite:
            yield
            return
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        with store_errors(), self.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                # A session lock outlives transactions: release it before the connection goes
                # back to the pool (a lost connection releases it by itself).
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()

    def ping(self) -> None:
        with store_errors(), self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def _refuse_unlogged_writes(conn: Connection, cursor: Any, statement: str, *_: Any) -> None:
    if conn.info.get(_WRITER_KEY) is None and statement.lstrip()[:6].upper() in _DML:
        raise UnloggedWrite(
            "a change reached the store outside the command path; it was refused",
            details={"statement": statement.lstrip()[:60]},
        )


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # WAL lets readers run during the ledger's serialised appends; FK checks are off by
            # default in SQLite.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
