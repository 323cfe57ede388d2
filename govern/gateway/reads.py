"""The governed read path: decide, check, log, then stream the Plan's rows and record which
rows were sent to which run.

Order of events for one read (invariant 2, "log before data"):

1. the request is checked (run id, shard, columns) and the dataset version resolved;
2. the decider makes the Plan and its decision entry is durable in the access log;
3. a denied Plan, or an explicitly requested column the Plan drops, is refused;
4. the run is opened (created on first use, owned by one principal and one purpose) in the same
   transaction as the ``read`` entry (dataset, version, run, decision index);
5. only then can the first batch be taken from ``GovernedRead.batches()``;
6. delivered row ids are merged into the run's bitmap as the stream goes; when it ends or is
   abandoned, the last of them and a ``read.end`` entry (row count, whether the read
   completed) commit together.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
from pyroaring import BitMap

from govern.auth import Caller
from govern.catalog import ROW_ID, Catalog, DatasetInfo
from govern.engine import Engine
from govern.errors import BadRequest, Forbidden, GovernError
from govern.events import ReadEnded, ReadStarted
from govern.gateway.decider import Decider, DecisionRequest
from govern.ledger.service import Ledger, Tx
from govern.plan import Plan
from govern.provenance.bitmaps import row_ids_of
from govern.provenance.store import ProvenanceStore, validate_run_id
from govern.unlearning import ErasureService

__all__ = [
    "RUN_REQUIRED_PURPOSES",
    "GovernedRead",
    "ReadDescription",
    "ReadRequest",
    "Reads",
]

log = logging.getLogger("govern.reads")

# Reads for these purposes must name a run, so that what a model learned from is recorded.
RUN_REQUIRED_PURPOSES = frozenset({"training"})
MAX_SHARDS = 65_536
MAX_COLUMNS = 1_000

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


class Reads:
    def __init__(
        self,
        *,
        decider: Decider,
        catalog: Catalog,
        engine: Engine,
        provenance: ProvenanceStore,
        erasure: ErasureService,
        ledger: Ledger,
        flush_seconds: float,
    ) -> None:
        self._decider = decider
        self._catalog = catalog
        self._engine = engine
        self._provenance = provenance
        self._erasure = erasure
        self._ledger = ledger
        self._flush_seconds = flush_seconds

    def describe(self, caller: Caller, req: ReadRequest) -> ReadDescription:
        """Decide (logged) and return the schema the read would have; streams nothing."""
        info, plan = self._check(caller, req)
        return ReadDescription(info=info, plan=plan, schema=self._engine.schema(info, plan))

    def open(self, caller: Caller, req: ReadRequest) -> GovernedRead:
        """Decide (logged), check, open the run and log the read, and return its stream."""
        info, plan = self._check(caller, req)
        # Read fresh on every read, so that every replica honours an erasure request at once.
        excluded = self._erasure.excluded(info.version_id)
        reader = self._engine.reader(info, plan, exclude=excluded, shard=req.shard)
        event = ReadStarted(
            dataset=info.name,
            version=info.version,
            purpose=req.purpose,
            run_id=req.run_id,
            decision=plan.log_index,
            columns=tuple(c for c in reader.schema.names if c != ROW_ID),
            shard=tuple(req.shard) if req.shard else None,
            excluded_rows=len(excluded),
        )

        def start(tx: Tx) -> None:
            if req.run_id is not None:
                self._provenance.open_run(req.run_id, caller.id, req.purpose)
            tx.emit(event)

        try:
            index = self._ledger.transact(caller.id, start).first_index
        except BaseException:
            reader.close()
            raise
        return GovernedRead(
            plan=plan,
            info=info,
            request=req,
            reader=reader,
            store=self._provenance,
            ledger=self._ledger,
            actor=caller.id,
            read_index=index,
            flush_seconds=self._flush_seconds,
        )

    def _check(self, caller: Caller, req: ReadRequest) -> tuple[DatasetInfo, Plan]:
        """Steps 1-3 of the module docstring; returns the version and its logged, allowing
        Plan."""
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
        info = self._catalog.get(req.dataset, req.version)
        if info.state == "quarantined":
            raise Forbidden(
                f"version {info.version} of {info.name!r} is quarantined and is not served",
                details={"dataset": info.name, "version": info.version},
            )
        # The row id always travels with the rows; naming it is allowed and changes nothing.
        columns = [c for c in req.columns if c != ROW_ID] if req.columns is not None else None
        for column in columns or ():
            info.column(column)  # BadRequest for a column the dataset does not have
        plan = self._decider.decide(
            caller,
            DecisionRequest(
                dataset=info.name,
                purpose=req.purpose,
                columns=columns or None,
                version=info.version,
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
        ledger: Ledger,
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
        self._ledger = ledger
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
        """Merge pending row ids into the run's bitmap (covered by this read's ``read`` entry
        and completed by its ``read.end``). Caller holds the lock."""
        self._last_flush = time.monotonic()
        if self.run_id is None or not self._pending:
            return
        self._store.merge(self.run_id, self.info.version_id, self._pending)
        self._pending = BitMap()

    def finish(self, state: ReadState, *, release: bool = True) -> None:
        """Record the delivered rows and log ``read.end`` in one transaction (once; later calls
        only flush).

        ``release=False`` leaves the engine's reader open: for a caller on another thread than
        the stream's (server shutdown), which must not close it under the stream's feet.
        """
        with self._lock:
            if self.state is not None:
                self._flush()
                return
            self.state = state
            if release:
                self._reader.close()
            event = ReadEnded(
                read=self.read_index,
                dataset=self.info.name,
                version=self.info.version,
                run_id=self.run_id,
                rows=self.rows_sent,
                bytes=self.bytes_sent,
                state=state,
            )

            def end(tx: Tx) -> None:
                self._flush()
                tx.emit(event)

            pending = BitMap(self._pending)
            try:
                self._ledger.transact(self._actor, end)
            except BaseException:
                self._pending = pending  # not recorded: a later flush tries again
                raise

    def finish_quietly(self, state: ReadState, *, release: bool = True) -> None:
        """``finish`` where raising would help nobody (a closed stream, shutdown)."""
        try:
            self.finish(state, release=release)
        except Exception:
            log.exception(
                "could not record the end of read %s (run %s)", self.read_index, self.run_id
            )
