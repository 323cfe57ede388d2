"""The anchorer: a background thread that writes signed checkpoints to a chain.

Every ``every_entries`` new entries, or once the oldest entry not yet anchored is
``every_seconds`` old, it signs a checkpoint at the current head (``Ledger.checkpoint()``),
writes its ``(tree_size, root)`` to the chain, and records the anchor in ``ledger_anchors``. One
anchor covers every entry before it, so a slow chain costs latency, never entries.

The chain is never on the path of a request: appends are local and durable, and when the chain
is down the anchorer retries with exponential backoff (with jitter, capped) while the lag
(entries and seconds not yet anchored) grows and is exported in ``/metrics``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from govern.errors import GovernError
from govern.ledger.anchor.base import (
    AnchorConflict,
    AnchorReceipt,
    Chain,
    ChainConfigError,
    ChainUnavailable,
)
from govern.ledger.anchor.records import AnchorRecord, AnchorRecords
from govern.ledger.service import Ledger

__all__ = ["AnchorStatus", "Anchorer"]

log = logging.getLogger("govern.ledger.anchor")


@dataclass(frozen=True)
class AnchorStatus:
    tree_size: int
    anchored_size: int
    lag_entries: int
    lag_seconds: float
    anchors: int  # anchored by this process since it started
    failures: int  # failed attempts since start
    consecutive_failures: int
    chain_up: bool | None  # None before the first attempt
    last_error: str | None
    retry_in_seconds: float
    last_gas_used: int | None


class Anchorer:
    def __init__(
        self,
        ledger: Callable[[], Ledger],
        open_chain: Callable[[], Chain],
        records: AnchorRecords,
        *,
        record: Callable[[AnchorReceipt], AnchorRecord],
        every_entries: int,
        every_seconds: float,
        backoff_initial: float = 1.0,
        backoff_max: float = 300.0,
        poll_seconds: float = 0.5,
    ) -> None:
        self._ledger = ledger
        self._open_chain = open_chain
        self.records = records
        # Stores an anchor with its event (the command layer's record_anchor).
        self._record = record
        self.every_entries = every_entries
        self.every_seconds = every_seconds
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.poll_seconds = min(poll_seconds, every_seconds)
        self.chain: Chain | None = None
        self._adopted = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._attempt_lock = threading.Lock()
        # State read by status() from other threads; each field is replaced whole.
        self._anchored_size: int | None = None
        self._store_size = 0  # log size in the store at the last poll
        self._lag_since: datetime | None = None  # append time of the first unanchored entry
        self._lag_since_index = -1
        self._anchors = 0
        self._failures = 0
        self._consecutive = 0
        self._chain_up: bool | None = None
        self._last_error: str | None = None
        self._next_attempt = 0.0  # time.monotonic() before which no attempt is made
        self._last_gas: int | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="ledger-anchorer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                # Stuck in a chain call (an RPC timeout); it is a daemon and exits with us.
                log.warning("the anchorer did not stop within %.0f s", timeout)
                return
        if self.chain is not None:
            self.chain.close()
            self.chain = None

    def wake(self) -> None:
        """Check for work now instead of at the next poll (tests, and after a burst)."""
        self._wake.set()

    # -- the loop ---------------------------------------------------------------------------------

    def _run(self) -> None:
        # Open the chain (and import its client, seconds of CPU for the embedded EVM) now,
        # while the gateway starts, not in the middle of serving when the first anchor is due.
        try:
            with self._attempt_lock:  # anchor_now opens it too: never twice at once
                if self.chain is None:
                    self.chain = self._open_chain()
        except GovernError as exc:
            self._failed(exc)
        except Exception as exc:  # the loop below retries; the lag metric shows it
            log.exception("opening the chain failed")
            self._failed(exc)
        while not self._stop.is_set():
            try:
                if self._due():
                    self.anchor_now()
            except GovernError as exc:
                self._failed(exc)
            except Exception as exc:  # never let the thread die; the lag metric shows it
                log.exception("anchoring failed unexpectedly")
                self._failed(exc)
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _due(self) -> bool:
        if time.monotonic() < self._next_attempt:
            return False
        # Other processes (CLI commands, replicas) append too; read the size from the store.
        size = self._store_size = self.records.log_size()
        anchored = self._refresh_anchored()
        self._refresh_lag_start(size, anchored)
        lag = size - anchored
        if lag <= 0:
            return False
        return lag >= self.every_entries or self._lag_seconds(anchored, size) >= self.every_seconds

    def _failed(self, exc: BaseException) -> None:
        self._failures += 1
        self._consecutive += 1
        if isinstance(exc, (ChainUnavailable, ChainConfigError, AnchorConflict)):
            self._chain_up = False
        self._last_error = f"{type(exc).__name__}: {exc}"
        # Full jitter: replicas that lost the same chain do not retry in lockstep.
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** (self._consecutive - 1))
        delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret
        self._next_attempt = time.monotonic() + delay
        level = logging.ERROR if isinstance(exc, AnchorConflict) else logging.WARNING
        log.log(
            level,
            "anchoring failed (%d in a row), retrying in %.1f s: %s",
            self._consecutive,
            delay,
            self._last_error,
        )

    # -- one attempt ------------------------------------------------------------------------------

    def anchor_now(
        self, record: Callable[[AnchorReceipt], AnchorRecord] | None = None
    ) -> AnchorRecord | None:
        """Sign a checkpoint at the head and anchor it now. None if everything is anchored.

        Raises ChainUnavailable (or another GovernError) when the attempt fails; the loop
        turns that into backoff, a direct caller sees it.
        """
        with self._attempt_lock, self.records.turn():
            ledger = self._ledger()
            self._store_size = self.records.log_size()
            if self._store_size <= self._refresh_anchored():
                return None
            if self.chain is None:
                self.chain = self._open_chain()
            chain = self.chain
            if not self._adopted:
                # Keep writing to the contract earlier anchors went to (a lost state file, a
                # replica): the store remembers it too.
                earlier = self.records.latest(chain_id=chain.chain_id)
                if earlier is not None:
                    chain.adopt_contract(earlier.contract_address)
                self._adopted = True
            checkpoint = ledger.checkpoint()
            started = time.perf_counter()
            receipt = chain.anchor(checkpoint.tree_size, checkpoint.root_hash)
            stored = (record or self._record)(receipt)
            self._anchored_size = max(self._anchored_size or 0, stored.tree_size)
            self._anchors += 1
            self._consecutive = 0
            self._chain_up = True
            self._last_error = None
            self._next_attempt = 0.0
            self._last_gas = receipt.gas_used
            log.info(
                "anchored tree size %d on chain %d (tx %s, block %d, gas %s, %.0f ms)%s",
                stored.tree_size,
                stored.chain_id,
                stored.tx_hash,
                stored.block_number,
                receipt.gas_used,
                (time.perf_counter() - started) * 1000,
                " (already on chain)" if receipt.already_anchored else "",
            )
            return stored

    # -- lag --------------------------------------------------------------------------------------

    def _refresh_anchored(self) -> int:
        self._anchored_size = self.records.anchored_size()
        return self._anchored_size

    def _refresh_lag_start(self, size: int, anchored: int) -> None:
        # The lag clock starts when the first entry not yet anchored was appended; read it once
        # per anchored size, not on every poll.
        if size <= anchored:
            self._lag_since, self._lag_since_index = None, -1
        elif self._lag_since_index != anchored:
            self._lag_since = self.records.entry_time(anchored)
            self._lag_since_index = anchored if self._lag_since is not None else -1

    def _lag_seconds(self, anchored: int, size: int) -> float:
        if size <= anchored or self._lag_since is None:
            return 0.0
        return max(0.0, (datetime.now(UTC) - self._lag_since).total_seconds())

    def status(self) -> AnchorStatus:
        """Cheap, non-blocking: safe to call from a metrics scrape while a chain call hangs."""
        # One indexed query, never a chain call: the lag shows entries appended while a chain
        # call hangs or backs off.
        size = max(self._store_size, self.records.log_size())
        anchored = self._anchored_size
        if anchored is None:
            anchored = self._refresh_anchored()
        if self._lag_since is None and size > anchored:
            self._refresh_lag_start(size, anchored)
        return AnchorStatus(
            tree_size=size,
            anchored_size=anchored,
            lag_entries=max(0, size - anchored),
            lag_seconds=self._lag_seconds(anchored, size),
            anchors=self._anchors,
            failures=self._failures,
            consecutive_failures=self._consecutive,
            chain_up=self._chain_up,
            last_error=self._last_error,
            retry_in_seconds=max(0.0, self._next_attempt - time.monotonic()),
            last_gas_used=self._last_gas,
        )
