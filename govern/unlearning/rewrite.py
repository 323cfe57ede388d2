"""The background rewrite: erased rows leave the data files, not only the reads.

Exclusions (``erasure.py``) stop serving a subject's rows at once; this removes the rows from
disk. For each dataset version with exclusions not yet applied, the version's Parquet file is
streamed through a filter that drops every excluded row id (of every request, so one pass serves
them all), written to a temporary file beside it, fsynced, and renamed over the original. The
remaining rows keep their ``_row_id`` values, so provenance bitmaps, shard assignment
(row id mod n) and the exclusions themselves stay valid for the rewritten file.

Reads stay correct throughout: a read that opened the old file keeps reading it (POSIX rename
does not disturb open files), every read still applies the exclusions, and the new file holds
none of the excluded rows. After the rename the rewriter hands the outcome to the command layer,
which stores it (the catalog row takes the new file's figures, keeping the registered ones in
``original_sha256``/``original_row_count``) with its ``erasure.rewrite`` event, old and new
SHA-256 and row counts, in one transaction. A crash anywhere leaves the
exclusions pending, and a later pass redoes the rewrite: filtering a file that holds none of the
rows again writes the same rows, so the work is idempotent.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyroaring import BitMap
from sqlalchemy import select, update

from govern.catalog import ROW_ID
from govern.catalog.scratch import claim_file
from govern.provenance.bitmaps import from_bytes
from govern.store.db import Database
from govern.store.models import Dataset, DatasetVersion, ErasureExclusion, as_utc

__all__ = [
    "RewriteOutcome",
    "RewriteState",
    "Rewriter",
    "VersionRewrite",
    "rewrite_file",
    "store_outcome",
]

log = logging.getLogger(__name__)

_BATCH_ROWS = 64_000


@dataclass(frozen=True)
class RewriteOutcome:
    """What one pass did to one version's file; ``error`` set when the rewrite failed (then
    ``message`` says why and the figures are zero)."""

    version_id: int
    dataset: str
    version: int
    exclusion_ids: tuple[int, ...]
    requests: tuple[str, ...]
    rows_registered: int
    rows_before: int = 0
    rows_after: int = 0
    sha256_before: str = ""
    sha256_after: str = ""
    size: int = 0
    error: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class VersionRewrite:
    """One dataset version's rewrite, as one request sees it."""

    dataset: str
    version: int
    state: str  # pending | done | failed
    rows_excluded: int
    rows_before: int | None = None
    rows_after: int | None = None
    sha256_before: str | None = None
    sha256_after: str | None = None
    rewritten_at: datetime | None = None
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "version": self.version,
            "state": self.state,
            "rows_excluded": self.rows_excluded,
            "rows_before": self.rows_before,
            "rows_after": self.rows_after,
            "sha256_before": self.sha256_before,
            "sha256_after": self.sha256_after,
            "rewritten_at": _iso(self.rewritten_at),
            "message": self.message,
        }


@dataclass(frozen=True)
class RewriteState:
    """A request's rewrite: done when every version it touched is rewritten, failed when any
    rewrite failed, else pending (a request without rows has nothing to rewrite: done)."""

    state: str
    versions: tuple[VersionRewrite, ...]


def _iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    return as_utc(t).isoformat()


def rewrite_file(path: Path, excluded: BitMap) -> tuple[int, int, str, int]:
    """Rewrite ``path`` without the rows whose row id is in ``excluded``; returns
    (rows before, rows after, new SHA-256, new size). Atomic: a temporary file, fsynced, then
    renamed over the original, and the directory fsynced so the rename survives a crash."""
    # Claimed (locked) so that a sweep after a crash removes it, and only then.
    claim = claim_file(path.parent, ".rewrite-", ".parquet")
    tmp = claim.path
    drop = pa.array(sorted(excluded), type=pa.int64())
    before = after = 0
    try:
        source = pq.ParquetFile(path)
        schema = source.schema_arrow
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for batch in source.iter_batches(batch_size=_BATCH_ROWS):
                before += batch.num_rows
                keep = pc.invert(pc.is_in(batch.column(ROW_ID), value_set=drop))
                kept = batch.filter(keep)
                after += kept.num_rows
                if kept.num_rows:
                    writer.write_table(pa.Table.from_batches([kept], schema=schema))
        source.close()
        digest = hashlib.sha256()
        with tmp.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
            os.fsync(f.fileno())
        size = tmp.stat().st_size
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        claim.release()
    _fsync_dir(path.parent)
    return before, after, digest.hexdigest(), size


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not every platform opens directories
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Rewriter:
    def __init__(
        self,
        db: Database,
        record: Callable[[RewriteOutcome], None],
        rewritten: Callable[[Path], None] | None = None,
    ) -> None:
        """``record`` stores an outcome with its event (the command layer's
        ``record_rewrite``); ``rewritten`` is told of each file rewritten, so values derived
        from the old file (the engine's kept hashes) go with it."""
        self.db = db
        self._record = record
        self._rewritten = rewritten
        self._lock = threading.Lock()
        # Failed rewrites are tried again once per process (e.g. after a full disk was freed).
        self._retried_failed = False

    def pending_versions(self, include_failed: bool = False) -> list[int]:
        states = ["pending", "failed"] if include_failed else ["pending"]
        with self.db.session() as s:
            return sorted(
                set(
                    s.scalars(
                        select(ErasureExclusion.version_id).where(
                            ErasureExclusion.rewrite_state.in_(states)
                        )
                    )
                )
            )

    def tick(self) -> list[int]:
        """Rewrite every version with exclusions not yet applied; returns their ids."""
        with self._lock:
            retry_failed, self._retried_failed = not self._retried_failed, True
            done = []
            for version_id in self.pending_versions(include_failed=retry_failed):
                self._record(self._rewrite(version_id))
                done.append(version_id)
            return done

    def _rewrite(self, version_id: int) -> RewriteOutcome:
        with self.db.session() as s:
            row = s.execute(
                select(DatasetVersion, Dataset.name)
                .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
                .where(DatasetVersion.id == version_id)
            ).one()
            version, name = row[0], str(row[1])
            path = Path(version.path)
            sha_before, rows_registered = version.sha256, int(version.row_count)
            exclusions = s.execute(
                select(
                    ErasureExclusion.id,
                    ErasureExclusion.request_id,
                    ErasureExclusion.row_ids,
                    ErasureExclusion.rewrite_state,
                ).where(ErasureExclusion.version_id == version_id)
            ).all()
        excluded = BitMap()
        for _, _, blob, _ in exclusions:
            excluded |= from_bytes(bytes(blob))
        outcome = RewriteOutcome(
            version_id=version_id,
            dataset=name,
            version=int(version.version),
            exclusion_ids=tuple(ex_id for ex_id, _, _, state in exclusions if state != "done"),
            requests=tuple(sorted({str(r) for _, r, _, state in exclusions if state != "done"})),
            rows_registered=rows_registered,
            sha256_before=sha_before,
        )
        try:
            before, after, sha_after, size = rewrite_file(path, excluded)
            if self._rewritten is not None:
                self._rewritten(path)
        except (OSError, pa.ArrowException) as exc:
            message = f"rewrite of {name} v{version.version} failed: {exc}"[:2000]
            log.warning("%s", message)
            return replace(outcome, error=type(exc).__name__, message=message)
        return replace(
            outcome, rows_before=before, rows_after=after, sha256_after=sha_after, size=size
        )

    def state(self, request_id: str) -> RewriteState:
        return self.states([request_id])[request_id]

    def states(self, request_ids: Sequence[str]) -> dict[str, RewriteState]:
        found: dict[str, list[VersionRewrite]] = {r: [] for r in request_ids}
        if request_ids:
            with self.db.session() as s:
                rows = s.execute(
                    select(ErasureExclusion, Dataset.name, DatasetVersion.version)
                    .join(DatasetVersion, DatasetVersion.id == ErasureExclusion.version_id)
                    .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
                    .where(ErasureExclusion.request_id.in_(list(request_ids)))
                    .order_by(Dataset.name, DatasetVersion.version)
                ).all()
            for ex, name, number in rows:
                found[ex.request_id].append(
                    VersionRewrite(
                        dataset=str(name),
                        version=int(number),
                        state=ex.rewrite_state,
                        rows_excluded=int(ex.row_count),
                        rows_before=ex.rewrite_rows_before,
                        rows_after=ex.rewrite_rows_after,
                        sha256_before=ex.rewrite_sha256_before,
                        sha256_after=ex.rewrite_sha256_after,
                        rewritten_at=ex.rewritten_at,
                        message=ex.rewrite_message,
                    )
                )
        out = {}
        for rid, versions in found.items():
            states = {v.state for v in versions}
            state = "failed" if "failed" in states else "pending" if "pending" in states else "done"
            out[rid] = RewriteState(state, tuple(versions))
        return out


def store_outcome(db: Database, outcome: RewriteOutcome) -> None:
    """Record a rewrite's outcome (inside the command's transaction)."""
    with db.session() as s:
        if outcome.error is not None:
            s.execute(
                update(ErasureExclusion)
                .where(ErasureExclusion.id.in_(list(outcome.exclusion_ids)))
                .values(rewrite_state="failed", rewrite_message=outcome.message)
            )
            return
        now = datetime.now(UTC)
        v = s.get(DatasetVersion, outcome.version_id)
        assert v is not None
        if v.original_sha256 is None:
            v.original_sha256, v.original_row_count = outcome.sha256_before, outcome.rows_registered
        v.sha256, v.row_count, v.size_bytes, v.rewritten_at = (
            outcome.sha256_after,
            outcome.rows_after,
            outcome.size,
            now,
        )
        s.execute(
            update(ErasureExclusion)
            .where(ErasureExclusion.id.in_(list(outcome.exclusion_ids)))
            .values(
                rewrite_state="done",
                rewrite_message=None,
                rewrite_sha256_before=outcome.sha256_before,
                rewrite_sha256_after=outcome.sha256_after,
                rewrite_rows_before=outcome.rows_before,
                rewrite_rows_after=outcome.rows_after,
                rewritten_at=now,
            )
        )
