"""A governed read: decide, check, log, then stream the Plan's rows and record which were sent.

Order of events for one read (invariant 2, "log before data"):

1. the request is checked (run id, shard, columns) and the dataset version resolved;
2. ``Gateway.decide`` makes the Plan and its decision entry is durable in the access log;
3. a denied Plan, or an explicitly requested column the Plan drops, is refused;
4. the run is opened (created on first use, owned by one principal and one purpose);
5. a ``read`` entry (dataset, version, run, decision index) is durable in the access log;
6. only then can the first batch be taken from ``GovernedRead.batches()``;
7. when the stream ends or is abandoned, the row ids delivered are merged into the run's bitmap
   and a ``read.end`` entry records the row count and whether the read completed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from pyroaring import BitMap

from govern.auth import Caller
from govern.catalog import ROW_ID, DatasetInfo
from govern.errors import BadRequest, Forbidden, GovernError
from govern.policy.plan import Plan
from govern.provenance.bitmaps import row_ids_of
from govern.provenance.store import ProvenanceStore, validate_run_id

if TYPE_CHECKING:
    from govern.gateway import Gateway

__all__ = [
    "RUN_REQUIRED_PURPOSES",
    "GovernedRead",
    "ReadDescription",
    "ReadRequest",
    "describe_read",
    "open_read",
]

log = logging.getLogger("govern.provenance")

# Reads for these purposes must name a run, so that what a model learned from is recorded.
RUN_REQUIRED_PURPOSES = frozenset({"training"})
MAX_SHARDS = 65_536
MAX_COLUMNS = 1_000

LogFn = Callable[[str, Mapping[str, Any], str], int]
ReadState = Literal["complete", "aborted", "interrupted"]


@dataclass(frozen=True)
class ReadRequest:
    dataset: str
    purpose: str
    run_id: str | None = None
    columns: Sequence[str] | None = None
    version: int | None = None
    # (index, count): only rows with row id % count == index.
    shard: tuple[int, int] | None = None


@dataclass(frozen=True)
class ReadDescription:
    info: DatasetInfo
    plan: Plan
    schema: pa.Schema


def _check(gateway: Gateway, caller: Caller, req: ReadRequest) -> tuple[DatasetInfo, Plan]:
    """Steps 1-3 of the module docstring; returns the version and its logged, allowing Plan."""
    if not req.purpose or len(req.purpose) > 100:
        raise BadRequest("a purpose of 1-100 characters is required")
    if req.run_id is not None:
        validate_run_id(req.run_id)
    elif req.purpose in RUN_REQUIRED_PURPOSES:
        raise BadRequest(
            f"a run id is required for purpose {req.purpose!r}",
            details={"purpose": req.purpose},
        )
    if req.shard is not None:
        index, count = req.shard
        if not 1 <= count <= MAX_SHARDS or not 0 <= index < count:
            raise BadRequest(
                f"shard must be (index, count) with 0 <= index < count <= {MAX_SHARDS}",
                details={"shard": [index, count]},
            )
    if req.columns is not None and len(req.columns) > MAX_COLUMNS:
        raise BadRequest(f"at most {MAX_COLUMNS} columns may be named")
    info = gateway.catalog.get(req.dataset, req.version)
    if info.state == "quarantined":
        raise Forbidden(
            f"version {info.version} of {info.name!r} is quarantined and is not served",
            details={"dataset": info.name, "version": info.version},
        )
    # The row id always travels with the rows; naming it is allowed and changes nothing.
    columns = [c for c in req.columns if c != ROW_ID] if req.columns is not None else None
    for column in columns or ():
        info.column(column)  # BadRequest for a column the dataset does not have
    # Import here: govern.gateway imports this module.
    from govern.gateway import DecisionRequest

    plan = gateway.decide(
        caller,
        DecisionRequest(
            dataset=info.name, purpose=req.purpose, columns=columns or None, version=info.version
        ),
    )
    if not plan.allowed:
        raise Forbidden(
            plan.reasons[0] if plan.reasons else "denied",
            details={"reasons": list(plan.reasons), "log_index": plan.log_index},
        )
    dropped = [c for c in columns or () if plan.columns.get(c) == "drop"]
    if dropped:
        raise Forbidden(
            f"the Plan drops column(s) {', '.join(dropped)} for purpose {req.purpose!r}",
            details={"columns": dropped, "log_index": plan.log_index},
        )
    return info, plan


def describe_read(gateway: Gateway, caller: Caller, req: ReadRequest) -> ReadDescription:
    """Decide (logged) and return the schema the read would have; streams nothing."""
    info, plan = _check(gateway, caller, req)
    return ReadDescription(info=info, plan=plan, schema=gateway.engine.schema(info, plan))


def open_read(gateway: Gateway, caller: Caller, req: ReadRequest) -> GovernedRead:
    info, plan = _check(gateway, caller, req)
    store = gateway.provenance
    if req.run_id is not None:
        store.open_run(req.run_id, caller.id, req.purpose)
    excluded = gateway.excluded_rows(info)
    reader = gateway.engine.reader(info, plan, exclude=excluded, shard=req.shard)
    try:
        index = gateway.log(
            "read",
            {
                "dataset": info.name,
                "version": info.version,
                "purpose": req.purpose,
                "run_id": req.run_id,
                "decision": plan.log_index,
                "columns": [c for c in reader.schema.names if c != ROW_ID],
                "shard": list(req.shard) if req.shard else None,
                "excluded_rows": len(excluded),
            },
            caller.id,
        )
    except BaseException:
        reader.close()
        raise
    return GovernedRead(
        plan=plan,
        info=info,
        request=req,
        reader=reader,
        store=store,
        log_fn=gateway.log,
        actor=caller.id,
        read_index=index,
        flush_seconds=gateway.settings.provenance_flush_seconds,
    )


class GovernedRead:
    """One read in flight: the Plan's batches, recorded as they are delivered.

    A batch counts as delivered when the consumer comes back for the next batch or for the end
    of the stream. A Flight server asks for the next batch only after the previous one was
    written to the client, so a client that disconnects mid-stream is credited with exactly the
    batches written before the disconnect. Delivered row ids are merged into the run's bitmap
    every ``flush_seconds`` and when the read ends, so a crash loses at most that window.
    """

    def __init__(
        self,
        *,
        plan: Plan,
        info: DatasetInfo,
        request: ReadRequest,
        reader: pa.RecordBatchReader,
        store: ProvenanceStore,
        log_fn: LogFn,
        actor: str,
        read_index: int,
        flush_seconds: float,
    ) -> None:
        self.plan = plan
        self.info = info
        self.request = request
        self.read_index = read_index
        self.rows_sent = 0
        self.bytes_sent = 0
        self.state: ReadState | None = None
        self._reader = reader
        self._store = store
        self._log = log_fn
        self._actor = actor
        self._flush_seconds = flush_seconds
        self._pending = BitMap()
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()
        self._started = False

    @property
    def schema(self) -> pa.Schema:
        schema: pa.Schema = self._reader.schema
        return schema

    @property
    def run_id(self) -> str | None:
        return self.request.run_id

    def batches(self) -> Generator[pa.RecordBatch, None, None]:
        """The Plan's batches, once. See the class docstring for when a batch counts."""
        if self._started:
            raise GovernError("a read can be streamed once")
        self._started = True
        try:
            for batch in self._reader:
                if batch.num_rows == 0:
                    continue
                ids = row_ids_of(batch) if self.run_id is not None else None
                yield batch
                self._delivered(batch, ids)
        except BaseException:
            # The consumer went away (GeneratorExit) or the engine failed: record what was
            # delivered and say the read did not complete.
            self.finish_quietly("aborted")
            raise
        self.finish("complete")

    def to_reader(self) -> pa.RecordBatchReader:
        """The read as a RecordBatchReader, for in-process consumers."""
        return pa.RecordBatchReader.from_batches(self.schema, self.batches())

    def _delivered(self, batch: pa.RecordBatch, ids: BitMap | None) -> None:
        with self._lock:
            self.rows_sent += batch.num_rows
            self.bytes_sent += batch.nbytes
            if ids is not None:
                self._pending |= ids
            if time.monotonic() - self._last_flush >= self._flush_seconds:
                self._flush()

    def _flush(self) -> None:
        """Merge pending row ids into the run's bitmap. Caller holds the lock."""
        self._last_flush = time.monotonic()
        if self.run_id is None or not self._pending:
            return
        self._store.merge(self.run_id, self.info.version_id, self._pending)
        self._pending = BitMap()

    def finish(self, state: ReadState, *, release: bool = True) -> None:
        """Record the delivered rows and log ``read.end`` (once; later calls only flush).

        ``release=False`` leaves the engine's reader open: for a caller on another thread than
        the stream's (server shutdown), which must not close it under the stream's feet.
        """
        with self._lock:
            try:
                self._flush()
            finally:
                if self.state is None:
                    self.state = state
                    if release:
                        self._reader.close()
                    self._log(
                        "read.end",
                        {
                            "read": self.read_index,
                            "dataset": self.info.name,
                            "version": self.info.version,
                            "run_id": self.run_id,
                            "rows": self.rows_sent,
                            "bytes": self.bytes_sent,
                            "state": state,
                        },
                        self._actor,
                    )

    def finish_quietly(self, state: ReadState, *, release: bool = True) -> None:
        """``finish`` where raising would help nobody (a closed stream, shutdown)."""
        try:
            self.finish(state, release=release)
        except Exception:
            log.exception(
                "could not record the end of read %s (run %s)", self.read_index, self.run_id
            )
