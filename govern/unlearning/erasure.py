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

from pyroaring import BitMap
from sqlalchemy import select

from govern.catalog import Catalog, validate_dataset_name
from govern.errors import BadRequest, NotFound
from govern.provenance import SubjectLookup
from govern.provenance.bitmaps import from_bytes, to_bytes
from govern.provenance.store import ProvenanceStore
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


def request_id(subject_id: str, datasets: Sequence[str] | None) -> str:
    """The same subject and scope give the same id, which makes repeated requests idempotent."""
    key = json.dumps([subject_id, sorted(datasets) if datasets is not None else None])
    return "er-" + hashlib.sha256(key.encode()).hexdigest()[:24]


class ErasureService:
    def __init__(self, db: Database, catalog: Catalog, provenance: ProvenanceStore) -> None:
        self.db = db
        self.catalog = catalog
        self.provenance = provenance

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
        lookup = SubjectLookup(self.provenance)
        try:
            found = [
                (info.version_id, ids)
                for info in infos
                if (ids := lookup.subject_rows(str(info.path), info.subject_column, subject_id))
            ]
        finally:
            lookup.close()
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
            rows = s.scalars(select(ErasureRequest).order_by(ErasureRequest.created_at))
            return [_info(r) for r in rows]

    def _get(self, rid: str) -> ErasureInfo | None:
        with self.db.session() as s:
            row = s.get(ErasureRequest, rid)
            return _info(row) if row is not None else None

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


def _info(row: ErasureRequest) -> ErasureInfo:
    return ErasureInfo(
        id=row.id,
        subject_id=row.subject_id,
        datasets=tuple(row.datasets) if row.datasets is not None else None,
        legal_basis=row.legal_basis,
        state=row.state,
        excluded_rows=int(row.excluded_rows),
    )
