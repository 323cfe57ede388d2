"""Runs and the rows each run received, in the metadata store (tables ``runs``, ``run_reads``).

One ``run_reads`` row per (run, dataset version) holds the union of every row id streamed to
that run from that version, as a serialised roaring bitmap. Reads of the same run merge into
it: under a process lock, and with a row lock (PostgreSQL) or the database's write lock
(SQLite) plus retries across processes, so concurrent readers of one run never lose ids.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from pyroaring import BitMap
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from govern.auth import Action, Caller, is_allowed
from govern.errors import BadRequest, Conflict, Forbidden, NotFound, StoreUnavailable
from govern.provenance.bitmaps import from_bytes, to_bytes
from govern.store.db import Database
from govern.store.models import Dataset, DatasetVersion, Run, RunRead, as_utc

__all__ = [
    "ProvenanceStore",
    "RunInfo",
    "RunReadInfo",
    "ensure_run_visible",
    "validate_run_id",
]

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$")
_RETRIES = 8
# Serialises merges in this process (every store object shares it); other processes are
# handled by the database.
_MERGE_LOCK = threading.Lock()


def validate_run_id(run_id: str) -> str:
    if not _RUN_ID.fullmatch(run_id):
        raise BadRequest(
            "run ids are 1-200 characters of letters, digits and ._:@- , starting with a "
            "letter or digit",
            details={"run_id": run_id[:200]},
        )
    return run_id


@dataclass(frozen=True)
class RunInfo:
    id: str
    principal_id: str
    purpose: str
    created_at: datetime


def ensure_run_visible(caller: Caller, run: RunInfo) -> None:
    """Reviewers see every run; anyone else only their own. Someone else's run answers as if
    it did not exist, so run ids cannot be probed."""
    if run.principal_id != caller.id and not is_allowed(caller.role, Action.RUNS_READ):
        raise NotFound(f"no run {run.id!r}", details={"run_id": run.id})


@dataclass(frozen=True)
class RunReadInfo:
    run_id: str
    dataset: str
    version: int
    version_id: int
    row_count: int


class ProvenanceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- runs ----------------------------------------------------------------------------------

    def open_run(self, run_id: str, principal_id: str, purpose: str) -> RunInfo:
        """The run, created on its first read. A run belongs to one principal and one purpose:
        nobody else may add reads to it, and it cannot change purpose."""
        validate_run_id(run_id)
        for _ in range(_RETRIES):
            try:
                with self.db.session() as s:
                    run = s.get(Run, run_id)
                    if run is None:
                        run = Run(id=run_id, principal_id=principal_id, purpose=purpose)
                        s.add(run)
                        s.flush()
                    elif run.principal_id != principal_id:
                        raise Forbidden(
                            f"run {run_id!r} belongs to another principal",
                            details={"run_id": run_id},
                        )
                    elif run.purpose != purpose:
                        raise Conflict(
                            f"run {run_id!r} was started for purpose {run.purpose!r}",
                            details={"run_id": run_id, "purpose": run.purpose},
                        )
                    return _run_info(run)
            except IntegrityError:
                continue  # created concurrently: read it back on the next pass
        raise StoreUnavailable("could not register the run; try again")

    def get_run(self, run_id: str) -> RunInfo:
        with self.db.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise NotFound(f"no run {run_id[:200]!r}", details={"run_id": run_id[:200]})
            return _run_info(run)

    def reads(self, run_id: str) -> list[RunReadInfo]:
        """Datasets, versions and row counts the run received, by dataset and version."""
        with self.db.session() as s:
            rows = s.execute(
                select(RunRead.version_id, RunRead.row_count, Dataset.name, DatasetVersion.version)
                .join(DatasetVersion, DatasetVersion.id == RunRead.version_id)
                .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
                .where(RunRead.run_id == run_id)
                .order_by(Dataset.name, DatasetVersion.version)
            ).all()
        return [
            RunReadInfo(
                run_id=run_id,
                dataset=name,
                version=int(version),
                version_id=int(vid),
                row_count=int(count),
            )
            for vid, count, name, version in rows
        ]

    def recent_runs(self, limit: int = 200) -> list[RunInfo]:
        """The newest runs first."""
        with self.db.session() as s:
            rows = s.scalars(select(Run).order_by(Run.created_at.desc(), Run.id).limit(limit))
            return [_run_info(r) for r in rows]

    def runs(self, run_ids: Sequence[str]) -> dict[str, RunInfo]:
        if not run_ids:
            return {}
        with self.db.session() as s:
            found = s.scalars(select(Run).where(Run.id.in_(list(run_ids)))).all()
            return {r.id: _run_info(r) for r in found}

    # -- row ids -------------------------------------------------------------------------------

    def merge(self, run_id: str, version_id: int, ids: BitMap) -> int:
        """Add ``ids`` to what the run received from the version; returns the new total."""
        with _MERGE_LOCK:
            last: Exception | None = None
            for attempt in range(_RETRIES):
                try:
                    return self._merge_once(run_id, version_id, ids)
                except (IntegrityError, StoreUnavailable) as exc:
                    # A concurrent first insert (unique run/version), or SQLite's busy snapshot
                    # when another process wrote between our read and our write: retry.
                    last = exc
                    time.sleep(0.01 * (attempt + 1))
            assert last is not None
            raise StoreUnavailable("could not record provenance; the store is busy") from last

    def _merge_once(self, run_id: str, version_id: int, ids: BitMap) -> int:
        # The rows a read delivered: covered by its ``read`` entry and totalled by its
        # ``read.end``, which commits with the last merge of the read.
        with self.db.begin("provenance"), self.db.session() as s:
            q = select(RunRead).where(RunRead.run_id == run_id, RunRead.version_id == version_id)
            if not self.db.is_sqlite:
                q = q.with_for_update()
            row = s.scalar(q)
            if row is None:
                merged = BitMap(ids)
                s.add(
                    RunRead(
                        run_id=run_id,
                        version_id=version_id,
                        row_ids=to_bytes(merged),
                        row_count=len(merged),
                    )
                )
            else:
                merged = from_bytes(bytes(row.row_ids))
                before = len(merged)
                merged |= ids
                if len(merged) == before:
                    return before
                row.row_ids = to_bytes(merged)
                row.row_count = len(merged)
            s.flush()
            return len(merged)

    def row_ids(self, run_id: str, version_id: int) -> BitMap:
        with self.db.session() as s:
            data = s.scalar(
                select(RunRead.row_ids).where(
                    RunRead.run_id == run_id, RunRead.version_id == version_id
                )
            )
        return from_bytes(bytes(data)) if data is not None else BitMap()

    def read_versions(self) -> list[int]:
        """Every dataset version some run has read."""
        with self.db.session() as s:
            return [int(v) for v in s.scalars(select(RunRead.version_id).distinct())]

    def bitmaps_for(self, version_ids: Sequence[int]) -> Iterator[tuple[str, int, bytes]]:
        """(run id, version id, serialised bitmap) for every read of these versions."""
        if not version_ids:
            return
        with self.db.session() as s:
            result = s.execute(
                select(RunRead.run_id, RunRead.version_id, RunRead.row_ids).where(
                    RunRead.version_id.in_(list(version_ids))
                )
            )
            for run_id, version_id, data in result:
                yield str(run_id), int(version_id), bytes(data)


def _run_info(run: Run) -> RunInfo:
    created = run.created_at
    created = as_utc(created)
    return RunInfo(
        id=run.id, principal_id=run.principal_id, purpose=run.purpose, created_at=created
    )
