"""Registering and reading dataset versions.

A version is a Parquet file under ``GOVERN_HOME/datasets/<name>/`` written once and never
changed, with a ``_row_id`` column (0..n-1) added on the way in: (version, row id) is the stable
key that provenance and erasure use. Registering has two steps: ``stage_version`` writes and
fsyncs the file under a temporary name and runs the admission checks, touching no row;
``commit_version``, inside the caller's transaction (the command that logs the version),
stores the rows and renames the file into place. If that transaction fails the file goes back
to its temporary name, and ``Staged.discard`` removes it: no half-registered version is ever
visible.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import TypeAlias

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from govern.catalog.names import ROW_ID, validate_column_name, validate_dataset_name, validate_tag
from govern.catalog.scratch import Claim, claim_file, disk_errors, sweep_files
from govern.catalog.types import duckdb_type, normalise_schema
from govern.errors import BadRequest, Conflict, DatasetNotFound, VersionNotFound
from govern.store.db import Database
from govern.store.models import ColumnTag, Dataset, DatasetColumn, DatasetVersion
from govern.store.stamp import StampedCache

__all__ = [
    "Admission",
    "Catalog",
    "ColumnInfo",
    "DatasetInfo",
    "Source",
    "Staged",
    "StagedVersion",
    "TagInfo",
    "TagProposal",
]

Source: TypeAlias = pa.Table | pa.RecordBatchReader | Iterable[pa.RecordBatch]


@dataclass(frozen=True)
class TagInfo:
    """A tag on a column and where it came from. Unconfirmed detector proposals apply to
    policies like confirmed tags (fail closed) until a steward removes them."""

    tag: str
    source: str
    confirmed: bool
    detector: str | None = None
    score: float | None = None


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str
    tags: tuple[str, ...] = ()
    tag_details: tuple[TagInfo, ...] = ()


@dataclass(frozen=True)
class TagProposal:
    """A tag a detector proposes for a column, with the evidence for it."""

    column: str
    tag: str
    detector: str
    score: float


@dataclass(frozen=True)
class StagedVersion:
    """A version written in full to a temporary file, not yet in the catalog."""

    name: str
    path: Path
    rows: int
    schema: pa.Schema  # normalised, without the row id column
    subject_column: str


@dataclass
class Admission:
    """What checks of a staged version decided: its state, proposed tags, and rows the checker
    writes in the same transaction as the version (``on_commit(session, dataset_id,
    version_id)``), so a version and its checks commit together or not at all."""

    state: str = "active"
    proposals: Sequence[TagProposal] = ()
    on_commit: Callable[[Session, int, int], None] | None = dataclass_field(
        default=None, repr=False
    )


@dataclass
class Staged:
    """A version written and checked under a temporary name, ready for ``commit_version``."""

    name: str
    tmp: Path
    rows: int
    sha256: str
    subject_column: str
    description: str
    schema: pa.Schema
    tags: Mapping[str, Sequence[str]]
    admission: Admission
    # Held from staging until discard, across the rename into place: a sweep by another
    # process never takes a file this one is still committing.
    claim: Claim | None = dataclass_field(default=None, repr=False)

    def discard(self) -> None:
        """Remove the temporary file (a no-op once the version is committed), and the
        dataset's folder if this left it empty (a dataset that never got a version)."""
        self.tmp.unlink(missing_ok=True)
        if self.claim is not None:
            self.claim.release()
        _remove_if_empty(self.tmp.parent)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    version: int
    version_id: int
    path: Path
    row_count: int
    subject_column: str
    columns: tuple[ColumnInfo, ...]
    mask_salt: str
    state: str
    description: str = ""

    def column(self, name: str) -> ColumnInfo:
        for c in self.columns:
            if c.name == name:
                return c
        raise BadRequest(
            f"dataset {self.name!r} has no column {name[:100]!r}",
            details={"dataset": self.name, "column": name[:100]},
        )

    @property
    def column_types(self) -> dict[str, str]:
        return {c.name: c.type for c in self.columns}


class Catalog:
    def __init__(self, db: Database, datasets_dir: Path) -> None:
        self.db = db
        self.datasets_dir = datasets_dir
        # Every decision looks its dataset up; the answer holds until the next change.
        self._versions: StampedCache[tuple[str, int | None], DatasetInfo] = StampedCache(db)

    # -- reading -------------------------------------------------------------------------------

    def all(self) -> list[DatasetInfo]:
        with self.db.session() as s:
            names = s.scalars(select(Dataset.name).order_by(Dataset.name)).all()
        out = []
        for name in names:
            try:
                out.append(self.get(name))
            except VersionNotFound:
                continue  # registered but no servable version yet
        return out

    def get(self, name: str, version: int | None = None) -> DatasetInfo:
        """The given version (in whatever state: whoever serves it checks), or the newest
        active one (quarantined and pending versions are never chosen)."""
        validate_dataset_name(name)
        return self._versions.get((name, version), lambda: self._load(name, version))

    def _load(self, name: str, version: int | None) -> DatasetInfo:
        with self.db.session() as s:
            ds = s.scalar(select(Dataset).where(Dataset.name == name))
            if ds is None:
                raise DatasetNotFound(f"no dataset {name!r}", details={"dataset": name})
            q = select(DatasetVersion).where(DatasetVersion.dataset_id == ds.id)
            if version is None:
                q = q.where(DatasetVersion.state == "active")
            else:
                q = q.where(DatasetVersion.version == version)
            v = s.scalar(q.order_by(DatasetVersion.version.desc()).limit(1))
            if v is None:
                raise VersionNotFound(
                    f"dataset {name!r} has no {'active ' if version is None else ''}version"
                    + (f" {version}" if version is not None else ""),
                    details={"dataset": name, "version": version},
                )
            return self._info(s, ds, v)

    def versions(self, name: str) -> list[DatasetInfo]:
        validate_dataset_name(name)
        with self.db.session() as s:
            ds = s.scalar(select(Dataset).where(Dataset.name == name))
            if ds is None:
                raise DatasetNotFound(f"no dataset {name!r}", details={"dataset": name})
            return [self._info(s, ds, v) for v in ds.versions]

    def _info(self, s: Session, ds: Dataset, v: DatasetVersion) -> DatasetInfo:
        tags: dict[str, list[TagInfo]] = {}
        for t in s.scalars(
            select(ColumnTag).where(ColumnTag.dataset_id == ds.id, ColumnTag.rejected.is_(False))
        ):
            tags.setdefault(t.column_name, []).append(
                TagInfo(t.tag, t.source, t.confirmed, t.detector, t.score)
            )
        cols = tuple(
            ColumnInfo(
                name=c.name,
                type=c.type,
                tags=tuple(sorted(t.tag for t in tags.get(c.name, []))),
                tag_details=tuple(sorted(tags.get(c.name, []), key=lambda t: t.tag)),
            )
            for c in v.columns
        )
        return DatasetInfo(
            name=ds.name,
            version=v.version,
            version_id=v.id,
            path=Path(v.path),
            row_count=v.row_count,
            subject_column=ds.subject_column,
            columns=cols,
            mask_salt=ds.mask_salt,
            state=v.state,
            description=ds.description,
        )

    # -- writing -------------------------------------------------------------------------------

    def stage_version(
        self,
        name: str,
        source: Source,
        subject_column: str,
        *,
        description: str = "",
        tags: Mapping[str, Sequence[str]] | None = None,
        state: str = "active",
        admit: Callable[[StagedVersion], Admission] | None = None,
    ) -> Staged:
        """Write ``source`` in full to a temporary file of the dataset's folder. ``admit``
        inspects the staged file (quality suite, tag detection) and decides its state. Nothing
        is stored; call ``commit_version``, then ``Staged.discard`` either way."""
        validate_dataset_name(name)
        batches, schema = _open(source)
        seen: set[str] = set()
        for field in schema:
            validate_column_name(field.name)
            # DuckDB matches identifiers case-insensitively: beside "ssn", a column "SSN"
            # would be read as "ssn" itself, outside the rules and masks meant for it.
            if field.name.lower() in seen:
                raise BadRequest(
                    f"column {field.name!r} differs from another only in case",
                    details={"column": field.name},
                )
            seen.add(field.name.lower())
        if subject_column not in schema.names:
            raise BadRequest(
                f"subject column {subject_column!r} is not a column of the data",
                details={"subject_column": subject_column, "columns": schema.names},
            )
        for column, column_tags in (tags or {}).items():
            if column not in schema.names:
                raise BadRequest(f"tagged column {column!r} is not in the data")
            for tag in column_tags:
                validate_tag(tag)
        target = normalise_schema(schema)
        folder = self.datasets_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        with disk_errors():
            claim = claim_file(folder, ".upload-", ".parquet")
        tmp = claim.path
        try:
            with disk_errors():
                rows, digest = _write_parquet(tmp, batches, target)
            admission = Admission(state=state)
            if admit is not None:
                admission = admit(StagedVersion(name, tmp, rows, target, subject_column))
        except BaseException:
            tmp.unlink(missing_ok=True)
            claim.release()
            _remove_if_empty(folder)
            raise
        return Staged(
            name,
            tmp,
            rows,
            digest,
            subject_column,
            description,
            target,
            tags or {},
            admission,
            claim,
        )

    def sweep(self) -> int:
        """Remove what a killed process left in the datasets folder: staged and rewritten
        files it was still writing, and a version file renamed into place whose transaction
        never committed (no row names it). Files a live process holds are left alone."""
        if not self.datasets_dir.is_dir():
            return 0
        scratch = [
            p
            for pattern in ("*/.upload-*.parquet", "*/.rewrite-*.parquet")
            for p in self.datasets_dir.glob(pattern)
        ]
        removed = sweep_files(iter(scratch))
        finals = {p.resolve() for p in self.datasets_dir.glob("*/v*.parquet")}
        unnamed = finals - self._named_files() if finals else set()
        # Asked again under the file's lock: its owner may have committed since.
        removed += sweep_files(iter(sorted(unnamed)), keep=lambda p: p in self._named_files())
        return removed

    def _named_files(self) -> set[Path]:
        with self.db.session() as s:
            return {Path(p) for p in s.scalars(select(DatasetVersion.path))}

    def commit_version(
        self, staged: Staged, *, on_rollback: Callable[[Callable[[], object]], None]
    ) -> DatasetInfo:
        """Store a staged version as the dataset's next one and rename its file into place.
        Runs inside the caller's transaction; ``on_rollback`` receives the step that moves the
        file back should that transaction fail."""
        name, tmp = staged.name, staged.tmp
        final: Path | None = None
        try:
            with self.db.session() as s:
                ds = s.scalar(select(Dataset).where(Dataset.name == name))
                if ds is None:
                    ds = Dataset(
                        name=name,
                        subject_column=staged.subject_column,
                        description=staged.description,
                        mask_salt=secrets.token_hex(16),
                    )
                    s.add(ds)
                    s.flush()
                elif ds.subject_column != staged.subject_column:
                    raise Conflict(
                        f"dataset {name!r} keys subjects on {ds.subject_column!r}; a new version "
                        "must keep the same subject column",
                        details={"subject_column": ds.subject_column},
                    )
                if staged.description:
                    ds.description = staged.description
                number = (
                    s.scalar(
                        select(func.max(DatasetVersion.version)).where(
                            DatasetVersion.dataset_id == ds.id
                        )
                    )
                    or 0
                ) + 1
                final = tmp.with_name(f"v{number}.parquet")
                if final.exists():
                    # Left by a version whose transaction failed after the rename (a crash):
                    # no row names it, so it is not data anyone was served.
                    final.unlink()
                version = DatasetVersion(
                    dataset_id=ds.id,
                    version=number,
                    path=str(final.resolve()),
                    row_count=staged.rows,
                    size_bytes=tmp.stat().st_size,
                    sha256=staged.sha256,
                    state=staged.admission.state,
                )
                s.add(version)
                s.flush()
                for pos, field in enumerate(staged.schema):
                    s.add(
                        DatasetColumn(
                            version_id=version.id,
                            name=field.name,
                            type=duckdb_type(field.type),
                            position=pos,
                        )
                    )
                existing = {
                    (t.column_name, t.tag)
                    for t in s.scalars(select(ColumnTag).where(ColumnTag.dataset_id == ds.id))
                }
                for column, column_tags in staged.tags.items():
                    for tag in column_tags:
                        if (column, tag) not in existing:
                            s.add(ColumnTag(dataset_id=ds.id, column_name=column, tag=tag))
                            existing.add((column, tag))
                # A proposal never overrides a steward: a tag already there (or removed by a
                # steward, kept as rejected) is left as it is.
                for p in staged.admission.proposals:
                    if (p.column, validate_tag(p.tag)) not in existing:
                        s.add(
                            ColumnTag(
                                dataset_id=ds.id,
                                column_name=p.column,
                                tag=p.tag,
                                source="detector",
                                confirmed=False,
                                detector=p.detector[:64],
                                score=p.score,
                            )
                        )
                        existing.add((p.column, p.tag))
                s.flush()
                if staged.admission.on_commit is not None:
                    staged.admission.on_commit(s, ds.id, version.id)
                    s.flush()
                os.replace(tmp, final)
                moved = final
                on_rollback(lambda: os.replace(moved, tmp))
            return self.get(name, number)
        except IntegrityError as exc:
            raise Conflict(
                f"dataset {name!r} was changed concurrently; retry", details={"dataset": name}
            ) from exc

    def set_tags(self, name: str, column: str, tags: Sequence[str]) -> DatasetInfo:
        """A steward's word on a column's tags: the listed ones are confirmed, the rest go.
        Detector proposals that go are kept as rejected, so a later version's detection does
        not propose them again."""
        info = self._newest_any(name)
        info.column(column)
        for tag in tags:
            validate_tag(tag)
        wanted = list(dict.fromkeys(tags))
        with self.db.session() as s:
            ds = s.scalar(select(Dataset).where(Dataset.name == name))
            assert ds is not None
            have = {
                t.tag: t
                for t in s.scalars(
                    select(ColumnTag).where(
                        ColumnTag.dataset_id == ds.id, ColumnTag.column_name == column
                    )
                )
            }
            for tag, row in have.items():
                if tag in wanted:
                    row.confirmed, row.rejected = True, False
                elif row.source == "detector":
                    row.confirmed, row.rejected = True, True
                else:
                    s.delete(row)
            s.flush()
            for tag in wanted:
                if tag not in have:
                    s.add(ColumnTag(dataset_id=ds.id, column_name=column, tag=tag))
        return self.get(name, info.version)

    def set_state(self, name: str, version: int, state: str) -> DatasetInfo:
        """Move a version between active and quarantined (a steward's acceptance)."""
        validate_dataset_name(name)
        with self.db.session() as s:
            v = s.scalar(
                select(DatasetVersion)
                .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
                .where(Dataset.name == name, DatasetVersion.version == version)
            )
            if v is None:
                raise VersionNotFound(
                    f"dataset {name!r} has no version {version}",
                    details={"dataset": name, "version": version},
                )
            v.state = state
        return self.get(name, version)

    def _newest_any(self, name: str) -> DatasetInfo:
        """The newest version whatever its state (tags and suites are per dataset)."""
        versions = self.versions(name)
        if not versions:
            raise VersionNotFound(f"dataset {name!r} has no version", details={"dataset": name})
        return versions[-1]


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty: another version or upload is there
        folder.rmdir()


def _open(source: Source) -> tuple[Iterable[pa.RecordBatch], pa.Schema]:
    if isinstance(source, pa.Table):
        return source.to_batches(max_chunksize=64_000), source.schema
    if isinstance(source, pa.RecordBatchReader):
        return source, source.schema
    it: Iterator[pa.RecordBatch] = iter(source)
    first = next(it, None)
    if first is None:
        raise BadRequest("the data has no record batches")

    def chain() -> Iterable[pa.RecordBatch]:
        yield first
        yield from it

    return chain(), first.schema


def _write_parquet(
    path: Path, batches: Iterable[pa.RecordBatch], schema: pa.Schema
) -> tuple[int, str]:
    """Stream batches to Parquet with row ids; never holds more than one batch in memory."""
    out_schema = schema.append(pa.field(ROW_ID, pa.int64(), nullable=False))
    rows = 0
    with pq.ParquetWriter(path, out_schema, compression="zstd") as writer:
        for batch in batches:
            if batch.schema.names != schema.names:
                raise BadRequest("record batches disagree on their columns")
            try:
                cast = pa.Table.from_batches([batch]).cast(schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise BadRequest(f"data does not fit its column types: {exc}") from exc
            ids = pa.array(range(rows, rows + batch.num_rows), type=pa.int64())
            writer.write_table(cast.append_column(out_schema.field(ROW_ID), ids))
            rows += batch.num_rows
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
        os.fsync(f.fileno())
    return rows, h.hexdigest()
