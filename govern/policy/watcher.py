"""Casbin watchers that tell every replica sharing a store that the policy set changed.

On PostgreSQL, ``update()`` sends NOTIFY on a channel and a background thread LISTENs and calls
the callback (PolicyService.reload). Any backend also polls the newest version every
``poll_seconds``, which is the whole mechanism on SQLite (single host) and a safety net on
PostgreSQL should a notification be missed while reconnecting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from casbin.persist.watcher import Watcher
from sqlalchemy.engine import make_url

__all__ = ["CHANNEL", "StoreWatcher"]

log = logging.getLogger("govern.policy.watcher")
CHANNEL = "govern_policy"
_TICK = 1.0


class StoreWatcher(Watcher):  # type: ignore[misc]
    def __init__(self, database_url: str, poll_seconds: float) -> None:
        self._url = make_url(database_url)
        self._postgres = self._url.get_backend_name() == "postgresql"
        self._poll = poll_seconds
        self._callback: Callable[[], Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _dsn(self) -> str:
        return self._url.set(drivername="postgresql").render_as_string(hide_password=False)

    def set_update_callback(self, func: Callable[[], Any]) -> None:
        self._callback = func
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="policy-watcher", daemon=True)
            self._thread.start()

    def update(self) -> None:
        if not self._postgres:
            return  # pollers pick the change up
        try:
            with psycopg.connect(self._dsn(), autocommit=True, connect_timeout=5) as conn:
                conn.execute(f"NOTIFY {CHANNEL}")
        except psycopg.Error:
            log.warning("could not notify replicas; they will poll", exc_info=True)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=_TICK * 3)

    def _fire(self) -> None:
        if self._callback is None:
            return
        try:
            self._callback()
        except Exception:
            log.exception("policy reload failed")

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._postgres:
                self._listen()
            else:
                self._stop.wait(self._poll)
            self._fire()

    def _listen(self) -> None:
        """Block until a notification or the poll interval passes, whichever is first."""
        deadline = time.monotonic() + self._poll
        try:
            with psycopg.connect(self._dsn(), autocommit=True, connect_timeout=5) as conn:
                conn.execute(f"LISTEN {CHANNEL}")
                # Wake every tick to notice close(); return on a notification or the deadline.
                while not self._stop.is_set() and time.monotonic() < deadline:
                    if any(True for _ in conn.notifies(timeout=_TICK, stop_after=1)):
                        return
        except psycopg.Error:
            log.warning("policy watcher lost its connection; retrying", exc_info=True)
            self._stop.wait(self._poll)
