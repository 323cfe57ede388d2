"""Erasure requests (invariant 5: no row of the subject is served again, from any version,
once the request is accepted; invariant 8: the subject is kept in clear only until then).

Accepting a request finds the subject's row ids in every version of the named datasets (all
of them by default) and stores them as one roaring bitmap per version, in the same transaction
as the request and its log entry. Every read asks the store for a version's exclusions
(``excluded``), so the effect is immediate for every gateway process sharing the store, with no
cache to go stale.

A request is keyed by the subject's commitment (``govern.events.commitment``), never by the id
itself: the id in clear is stored only while the request has work left, and removed when it
completes. Versions registered later are matched against the commitments of every request,
so a request keeps holding after its cleartext is gone.
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
from govern.events.commitment import Commitments
from govern.jobs.rollup import roll_up
from govern.jobs.service import JobInfo, jobs_by_request
from govern.plan import rowfilter
from govern.provenance import SubjectLookup, SubjectRun
from govern.provenance.bitmaps import from_bytes, to_bytes
from govern.provenance.store import ProvenanceStore
from govern.store.db import Database
from govern.store.models import ErasureExclusion, ErasureRequest, utcnow

__all__ = ["Completed", "ErasureInfo", "ErasureService", "request_id"]

_MAX_SUBJECT = 200


@dataclass(frozen=True)
class ErasureInfo:
    id: str
    # None once the request has completed (only the commitment is kept).
    subject_id: str | None
    subject_commitment: str
    datasets: tuple[str, ...] | None
    legal_basis: str
    state: str
    excluded_rows: int
    created: bool = False
    # Why the state is what it is (rolled up from the request's jobs, govern.jobs.rollup).
    message: str = ""
    # How many dataset versions had rows withdrawn.
    versions: int = 0
    # Whether it completed (its completion logged, its cleartext subject id removed).
    completed: bool = False


@dataclass(frozen=True)
class Completed:
    """A request that has just completed, with the number of jobs it took."""

    id: str
    subject_commitment: str
    jobs: int


def request_id(commitment: str, datasets: Sequence[str] | None) -> str:
    """The same subject and scope give the same id, which makes repeated requests idempotent;
    built from the commitment, so the id reveals nothing about the subject either."""
    key = json.dumps([commitment, sorted(datasets) if datasets is not None else None])
    return "er-" + hashlib.sha256(key.encode()).hexdigest()[:24]


class ErasureService:
    def __init__(self, db: Database, catalog: Catalog, commitments: Commitments) -> None:
        self.db = db
        self.catalog = catalog
        self.commitments = commitments

    def find(self, commitment: str, datasets: Sequence[str] | None) -> ErasureInfo | None:
        """The request already made for this subject and scope, if any (by commitment, so
        requests keyed on upgrade, whose ids were made differently, are found too)."""
        names = _scope(datasets)
        with self.db.session() as s:
            rows = s.scalars(
                select(ErasureRequest).where(ErasureRequest.subject_commitment == commitment)
            ).all()
            rid = next((r.id for r in rows if r.datasets == names), None)
        return self._get(rid) if rid is not None else None

    def unkeyed(self) -> list[tuple[str, str]]:
        """(request id, subject id) of requests made before commitments existed."""
        with self.db.session() as s:
            rows = s.execute(
                select(ErasureRequest.id, ErasureRequest.subject_id).where(
                    ErasureRequest.subject_commitment.is_(None)
                )
            ).all()
        return [(str(rid), str(sid)) for rid, sid in rows if sid is not None]

    def set_commitment(self, rid: str, commitment: str) -> None:
        with self.db.session() as s:
            row = s.get(ErasureRequest, rid)
            if row is None:
                raise NotFound(f"no erasure request {rid[:64]!r}", details={"id": rid[:64]})
            row.subject_commitment = commitment

    def request(
        self,
        subject_id: str,
        commitment: str,
        datasets: Sequence[str] | None,
        legal_basis: str,
        by: str,
    ) -> ErasureInfo:
        """Store a new request and the subject's row ids in every version in scope. Runs in
        the command's transaction, so no version can be registered between the scan and the
        commit."""
        if not subject_id or len(subject_id) > _MAX_SUBJECT or "\x00" in subject_id:
            raise BadRequest("subject_id must be 1-200 characters without NUL")
        names = _scope(datasets)
        rid = request_id(commitment, names)
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
        # Nothing to exclude and no jobs to run: the request is complete as soon as it is made,
        # and the subject id in clear is never stored.
        state = "excluded" if total else "completed"
        with self.db.session() as s:
            s.add(
                ErasureRequest(
                    id=rid,
                    subject_id=subject_id if total else None,
                    subject_commitment=commitment,
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
            subject_id if total else None,
            commitment,
            tuple(names) if names else None,
            legal_basis,
            state,
            total,
            created=True,
            versions=len(found),
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

    def scrub_if_completed(self, rid: str) -> Completed | None:
        """If the request has just completed (its state rolls up to ``completed`` and it was
        not marked so before), remove the subject id in clear and mark it. Runs in a command's
        transaction; returns what completed, or None."""
        jobs = jobs_by_request(self.db, [rid])[rid]
        with self.db.session() as s:
            row = s.get(ErasureRequest, rid)
            if row is None or row.completed_at is not None:
                return None
            state, _ = roll_up(row.state, int(row.excluded_rows), jobs)
            if state != "completed":
                return None
            row.subject_id = None
            row.completed_at = utcnow()
            return Completed(row.id, row.subject_commitment or "", len(jobs))

    def affected_runs(self, rid: str, provenance: ProvenanceStore) -> list[SubjectRun]:
        """The runs that received rows this request withdrew, from its stored exclusions: they
        stay right after the background rewrite removed the rows from the files."""
        lookup = SubjectLookup(provenance)
        try:
            return lookup.runs_reading(self.exclusions(rid))
        finally:
            lookup.close()

    def apply_to_version(self, info: DatasetInfo) -> int:
        """Apply every existing erasure request that covers ``info``'s dataset to this version
        (one registered after the requests): store its exclusions. Returns the rows excluded.

        The command that registers a version calls this in the same transaction, before the
        version can be served. Requests still holding their subject id are matched by value;
        completed ones by comparing commitments of the version's subject values. Idempotent: a
        request that already has exclusions for the version is skipped.
        """
        with self.db.session() as s:
            requests = s.execute(
                select(
                    ErasureRequest.id,
                    ErasureRequest.subject_id,
                    ErasureRequest.subject_commitment,
                    ErasureRequest.datasets,
                )
            ).all()
            done = set(
                s.scalars(
                    select(ErasureExclusion.request_id).where(
                        ErasureExclusion.version_id == info.version_id
                    )
                )
            )
        todo = [
            (rid, subject, commitment)
            for rid, subject, commitment, scope in requests
            if rid not in done and (scope is None or info.name in scope)
        ]
        if not todo:
            return 0
        by_value = [(rid, subject) for rid, subject, _ in todo if subject is not None]
        # One subject may have several requests (different scopes), all under its commitment.
        by_commitment: dict[str, list[str]] = {}
        for rid, subject, c in todo:
            if subject is None and c:
                by_commitment.setdefault(c, []).append(rid)
        if by_commitment:
            values = _subject_values(info)
            by_value += [
                (rid, value)
                for c, value in self.commitments.subjects(values).items()
                for rid in by_commitment.get(c, ())
            ]
        if not by_value:
            return 0
        found = _subject_rows(info, by_value)
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


def _scope(datasets: Sequence[str] | None) -> list[str] | None:
    return None if datasets is None else sorted({validate_dataset_name(d) for d in datasets})


def _subject_values(info: DatasetInfo) -> list[str]:
    """The distinct subject ids of a version, as text."""
    column = rowfilter.quote_identifier(info.subject_column)
    sql = (
        f"SELECT DISTINCT CAST({column} AS VARCHAR) AS s "  # noqa: S608
        f"FROM {parquet_source(info.path)} WHERE {column} IS NOT NULL"
    )
    con = duckdb.connect(":memory:")
    try:
        values = con.sql(sql).to_arrow_table().column("s").to_pylist()
    finally:
        con.close()
    return [str(v) for v in values]


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
        subject_commitment=row.subject_commitment or "",
        datasets=tuple(row.datasets) if row.datasets is not None else None,
        legal_basis=row.legal_basis,
        state=state,
        excluded_rows=int(row.excluded_rows),
        message=message,
        completed=row.completed_at is not None,
    )
