"""Erasure requests (invariant 5: no row of the subject is served again, from any version,
once the request is accepted).

Accepting a request finds the subject's row ids in every version of the named datasets (all
of them by default) and stores them as one roaring bitmap per version, in the same transaction
as the request. Every read asks the store for a version's exclusions (``excluded``), so the
effect is immediate for every gateway process sharing the store, with no cache to go stale.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
from pyroaring import BitMap
from sqlalchemy import select

from govern.catalog import ROW_ID, Catalog, DatasetInfo, parquet_source, validate_dataset_name
from govern.errors import BadRequest, NotFound
from govern.jobs.rollup import roll_up
from govern.jobs.service import JobInfo, jobs_by_request
from govern.policy import rowfilter
from govern.provenance.bitmaps import from_bytes, to_bytes
from govern.store.db import Database
from govern.store.models import ErasureExclusion, ErasureRequest

__all__ = ["ErasureInfo", "ErasureService"]

_MAX_SUBJECT = 200


@dataclass(frozen=True)
class ErasureInfo:
    id: str
    subject_id: str
    datasets: tuple[str, ...] | None
    legal_basis: str
    state: str
    excluded_rows: int
    created: bool = False
    # Why the state is what it is (rolled up from the request's jobs, govern.jobs.rollup).
    message: str = ""


def request_id(subject_id: str, datasets: Sequence[str] | None) -> str:
    """The same subject and scope give the same id, which makes repeated requests idempotent."""
    key = json.dumps([subject_id, sorted(datasets) if datasets is not None else None])
    return "er-" + hashlib.sha256(key.encode()).hexdigest()[:24]


class ErasureService:
    def __init__(self, db: Database, catalog: Catalog) -> None:
        self.db = db
        self.catalog = catalog

    def request(
        self, subject_id: str, datasets: Sequence[str] | None, legal_basis: str, by: str
    ) -> ErasureInfo:
        if not subject_id or len(subject_id) > _MAX_SUBJECT or "\x00" in subject_id:
            raise BadRequest("subject_id must be 1-200 characters without NUL")
        names = None if datasets is None else sorted({validate_dataset_name(d) for d in datasets})
        rid = request_id(subject_id, names)
        existing = self._get(rid)
        if existing is not None:
            return existing
        infos = [
            v
            for name in (names or [d.name for d in self.catalog.all()])
            for v in self.catalog.versions(name)
        ]
        found = [
            (info.version_id, ids)
            for info in infos
            if (ids := _subject_rows(info, [(rid, subject_id)]).get(rid))
        ]
        total = sum(len(ids) for _, ids in found)
        # Nothing to exclude and no jobs to run: the request is complete as soon as it is made.
        state = "excluded" if total else "completed"
        with self.db.session() as s:
            s.add(
                ErasureRequest(
                    id=rid,
                    subject_id=subject_id,
                    datasets=names,
                    legal_basis=legal_basis,
                    state=state,
                    excluded_rows=total,
                    requested_by=by,
                )
            )
            s.flush()
            for version_id, ids in found:
                s.add(
                    ErasureExclusion(
                        request_id=rid,
                        version_id=version_id,
                        row_ids=to_bytes(ids),
                        row_count=len(ids),
                    )
                )
        return ErasureInfo(
            rid,
            subject_id,
            tuple(names) if names else None,
            legal_basis,
            state,
            total,
            created=True,
        )

    def get(self, rid: str) -> ErasureInfo:
        found = self._get(rid)
        if found is None:
            raise NotFound(f"no erasure request {rid[:64]!r}", details={"id": rid[:64]})
        return found

    def all(self) -> list[ErasureInfo]:
        with self.db.session() as s:
            rows = s.scalars(select(ErasureRequest).order_by(ErasureRequest.created_at)).all()
        jobs = jobs_by_request(self.db, [r.id for r in rows])
        return [_info(r, jobs[r.id]) for r in rows]

    def _get(self, rid: str) -> ErasureInfo | None:
        with self.db.session() as s:
            row = s.get(ErasureRequest, rid)
        return _info(row, jobs_by_request(self.db, [rid])[rid]) if row is not None else None

    def apply_to_version(self, info: DatasetInfo) -> int:
        """Apply every existing erasure request that covers ``info``'s dataset to this version
        (one registered after the requests): store its exclusions. Returns the rows excluded.

        Ingestion calls this for each new version, before the version is served, so that a
        request made earlier holds for data that arrives later. Idempotent: a request that
        already has exclusions for the version is skipped.
        """
        with self.db.session() as s:
            requests = s.execute(
                select(ErasureRequest.id, ErasureRequest.subject_id, ErasureRequest.datasets)
            ).all()
            done = set(
                s.scalars(
                    select(ErasureExclusion.request_id).where(
                        ErasureExclusion.version_id == info.version_id
                    )
                )
            )
        todo = [
            (rid, subject)
            for rid, subject, scope in requests
            if rid not in done and (scope is None or info.name in scope)
        ]
        if not todo:
            return 0
        found = _subject_rows(info, todo)
        total = 0
        with self.db.session() as s:
            for rid, ids in found.items():
                s.add(
                    ErasureExclusion(
                        request_id=rid,
                        version_id=info.version_id,
                        row_ids=to_bytes(ids),
                        row_count=len(ids),
                    )
                )
                row = s.get(ErasureRequest, rid)
                if row is not None:
                    row.excluded_rows = int(row.excluded_rows) + len(ids)
                total += len(ids)
        return total

    def exclusions(self, rid: str) -> dict[int, BitMap]:
        """{version id: the row ids this request withdrew from it}. These stay the subject's
        rows after the background rewrite has removed them from the files, so affected runs are
        found from here rather than by scanning the data again."""
        with self.db.session() as s:
            rows = s.execute(
                select(ErasureExclusion.version_id, ErasureExclusion.row_ids).where(
                    ErasureExclusion.request_id == rid
                )
            ).all()
        return {int(v): from_bytes(bytes(blob)) for v, blob in rows}

    def excluded(self, version_id: int) -> frozenset[int]:
        """Row ids of a version that erasure requests withdrew (read fresh on every call)."""
        with self.db.session() as s:
            blobs = s.scalars(
                select(ErasureExclusion.row_ids).where(ErasureExclusion.version_id == version_id)
            ).all()
        union = BitMap()
        for blob in blobs:
            union |= from_bytes(bytes(blob))
        return frozenset(union)


def _subject_rows(info: DatasetInfo, requests: Sequence[tuple[str, str]]) -> dict[str, BitMap]:
    """{request id: the version's row ids of the request's subject}, for many requests in one
    scan: the requests are joined to the version as an Arrow table, so no value reaches SQL."""
    wanted = pa.table(
        {
            "request_id": pa.array([r for r, _ in requests], pa.string()),
            "subject_id": pa.array([sub for _, sub in requests], pa.string()),
        }
    )
    column = rowfilter.quote_identifier(info.subject_column)
    sql = (
        f"SELECT w.request_id, v.{rowfilter.quote_identifier(ROW_ID)} AS row_id "  # noqa: S608
        f"FROM {parquet_source(info.path)} v JOIN wanted w "
        f"ON CAST(v.{column} AS VARCHAR) = w.subject_id"
    )
    con = duckdb.connect(":memory:")
    try:
        con.register("wanted", wanted)
        table = con.sql(sql).to_arrow_table()
    finally:
        con.close()
    out: dict[str, BitMap] = {}
    for rid, row_id in zip(
        table.column("request_id").to_pylist(), table.column("row_id").to_pylist(), strict=True
    ):
        out.setdefault(rid, BitMap()).add(int(row_id))
    return out


def _info(row: ErasureRequest, jobs: Sequence[JobInfo] = ()) -> ErasureInfo:
    state, message = roll_up(row.state, int(row.excluded_rows), jobs)
    return ErasureInfo(
        id=row.id,
        subject_id=row.subject_id,
        datasets=tuple(row.datasets) if row.datasets is not None else None,
        legal_basis=row.legal_basis,
        state=state,
        excluded_rows=int(row.excluded_rows),
        message=message,
    )
