"""Which runs read any row of a data subject.

A subject's rows are found per dataset version from the version's own Parquet file, by the
dataset's subject column (DuckDB, the value bound as a parameter), and intersected with every
stored run bitmap of that version. Only versions some run has read are scanned, and a bitmap
intersection test costs microseconds, so the lookup stays well under a second for thousands of
runs (``tests/unit/provenance`` measures it).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import duckdb
from pyroaring import BitMap
from sqlalchemy import select

from govern.catalog import ROW_ID, parquet_source
from govern.plan import rowfilter
from govern.provenance.bitmaps import from_bytes, row_ids_of
from govern.provenance.store import ProvenanceStore, RunInfo
from govern.store.models import Dataset, DatasetVersion

__all__ = ["SubjectLookup", "SubjectRead", "SubjectRun"]


@dataclass(frozen=True)
class SubjectRead:
    dataset: str
    version: int
    rows: int  # how many of the subject's rows in this version the run received


@dataclass(frozen=True)
class SubjectRun:
    run: RunInfo
    reads: tuple[SubjectRead, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class _Version:
    id: int
    dataset: str
    version: int
    path: str
    subject_column: str


class SubjectLookup:
    def __init__(self, store: ProvenanceStore) -> None:
        self.store = store
        # Its own DuckDB database: a lookup must not queue behind long training streams.
        self._con = duckdb.connect(":memory:")
        self._lock = threading.Lock()

    def close(self) -> None:
        self._con.close()

    def subject_rows(self, path: str, subject_column: str, subject_id: str) -> BitMap:
        """Row ids of one version whose subject column equals ``subject_id``."""
        column = rowfilter.quote_identifier(subject_column)
        # The path comes from the catalog and the column is a validated, quoted identifier;
        # the subject is bound. Compared as text, so numeric subject columns work too.
        sql = (
            f"SELECT {rowfilter.quote_identifier(ROW_ID)} FROM {parquet_source(path)} "  # noqa: S608
            f"WHERE CAST({column} AS VARCHAR) = ?"
        )
        with self._lock:
            cursor = self._con.cursor()
        try:
            relation = cursor.sql(sql, params=[subject_id])
            assert relation is not None
            table = relation.to_arrow_table()
        finally:
            cursor.close()
        return row_ids_of(table)

    def runs_for_subject(
        self, subject_id: str, datasets: Sequence[str] | None = None
    ) -> list[SubjectRun]:
        """Every run that received at least one row of ``subject_id``, with per-version
        counts of those rows, ordered by run id."""
        versions = self._read_versions(datasets)
        return self._runs_reading(
            {
                v.id: rows
                for v in versions
                if (rows := self.subject_rows(v.path, v.subject_column, subject_id))
            },
            {v.id: v for v in versions},
        )

    def runs_reading(self, rows: Mapping[int, BitMap]) -> list[SubjectRun]:
        """Every run that received at least one of ``rows`` ({version id: row ids}, e.g. an
        erasure request's exclusions), with per-version counts, ordered by run id."""
        by_id = {v.id: v for v in self._versions(select_ids=list(rows))}
        return self._runs_reading({v: ids for v, ids in rows.items() if v in by_id}, by_id)

    def _runs_reading(
        self, subject_rows: Mapping[int, BitMap], by_id: Mapping[int, _Version]
    ) -> list[SubjectRun]:
        hits: dict[str, list[SubjectRead]] = {}
        for run_id, version_id, data in self.store.bitmaps_for(sorted(subject_rows)):
            wanted = subject_rows[version_id]
            received = from_bytes(data)
            if not received.intersect(wanted):
                continue
            v = by_id[version_id]
            hits.setdefault(run_id, []).append(
                SubjectRead(
                    dataset=v.dataset,
                    version=v.version,
                    rows=received.intersection_cardinality(wanted),
                )
            )
        runs = self.store.runs(sorted(hits))
        return [
            SubjectRun(
                run=runs[r], reads=tuple(sorted(hits[r], key=lambda x: (x.dataset, x.version)))
            )
            for r in sorted(hits)
            if r in runs
        ]

    def _read_versions(self, datasets: Sequence[str] | None) -> list[_Version]:
        read = self.store.read_versions()
        return self._versions(select_ids=list(read), datasets=datasets) if read else []

    def _versions(
        self, *, select_ids: Sequence[int], datasets: Sequence[str] | None = None
    ) -> list[_Version]:
        q = (
            select(
                DatasetVersion.id,
                Dataset.name,
                DatasetVersion.version,
                DatasetVersion.path,
                Dataset.subject_column,
            )
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .where(DatasetVersion.id.in_(select_ids))
        )
        if datasets is not None:
            q = q.where(Dataset.name.in_(list(datasets)))
        with self.store.db.session() as s:
            rows = s.execute(q).all()
        return [
            _Version(id=int(i), dataset=n, version=int(v), path=p, subject_column=c)
            for i, n, v, p, c in rows
        ]
