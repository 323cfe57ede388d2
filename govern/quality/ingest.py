"""Ingestion: an uploaded file becomes a new immutable version, validated and tagged.

``Ingestor.prepare`` streams the file into a staged Parquet version (row ids 0..n-1), runs the
dataset's suite (or, for its first version, one inferred from it) over the staged file, and has
the detector propose tags. The command that ingests then commits the version in one
transaction with its state (``active``, or ``quarantined`` when the suite failed), its
validation result, the inferred suite, the proposals and its events. Any error before that
commit leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from govern.catalog.names import validate_column_name, validate_dataset_name
from govern.catalog.sensitive import SensitiveDataDetector
from govern.catalog.service import (
    Admission,
    Catalog,
    DatasetInfo,
    Staged,
    StagedVersion,
    TagProposal,
)
from govern.catalog.upload import UploadFile, open_upload
from govern.errors import BadRequest, Conflict, DatasetNotFound
from govern.quality.store import QualityStore
from govern.quality.suite import infer_suite, types_of
from govern.quality.validate import ValidationReport, validate_file

__all__ = ["IngestResult", "Ingestor", "PreparedIngest", "Progress"]

# progress(stage, done, total): stage is "write" (rows or bytes), "validate" (rows), "detect".
Progress = Callable[[str, int, int], None]

_ARROW_TYPES = {
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "VARCHAR": pa.string(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
}


@dataclass(frozen=True)
class IngestResult:
    info: DatasetInfo
    report: ValidationReport
    proposals: tuple[TagProposal, ...]
    suite_inferred: bool
    format: str


@dataclass(frozen=True)
class PreparedIngest:
    """A staged, validated and tagged upload, ready to commit."""

    staged: Staged
    report: ValidationReport
    proposals: tuple[TagProposal, ...]
    suite_inferred: bool
    format: str


@dataclass
class Ingestor:
    catalog: Catalog
    quality: QualityStore
    detector: SensitiveDataDetector
    chunk_rows: int = 1_000_000

    def prepare(
        self,
        name: str,
        path: Path,
        subject_column: str,
        actor: str,
        *,
        filename: str | None = None,
        description: str = "",
        unique_columns: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> PreparedIngest:
        validate_dataset_name(name)
        for c in unique_columns:
            validate_column_name(c)
        previous = self._previous(name)
        if previous is not None and previous.subject_column != subject_column:
            raise Conflict(
                f"dataset {name!r} keys subjects on {previous.subject_column!r}; a new version "
                "must keep the same subject column",
                details={"subject_column": previous.subject_column},
            )
        # A CSV for an existing dataset is read with that dataset's column types.
        kept = (
            {c.name: _ARROW_TYPES[c.type] for c in previous.columns if c.type in _ARROW_TYPES}
            if previous is not None
            else None
        )
        up = open_upload(path, filename, kept)
        missing = [c for c in unique_columns if c not in up.schema.names]
        if missing:
            raise BadRequest(
                "columns declared unique are not in the data", details={"columns": missing}
            )
        outcome: dict[str, object] = {}

        def admit(staged: StagedVersion) -> Admission:
            if progress:
                progress("validate", 0, staged.rows)
            types = types_of(staged.schema)
            existing = self.quality.suite(name)
            suite = (
                existing.suite
                if existing is not None
                else infer_suite(staged.path, types, staged.subject_column, unique_columns)
            )
            report = validate_file(
                staged.path,
                suite,
                chunk_rows=self.chunk_rows,
                progress=(lambda d, t: progress("validate", d, t)) if progress else None,
            )
            if progress:
                progress("detect", 0, 1)
            proposals = self.detector.detect(staged.path, types, staged.subject_column)
            if progress:
                progress("detect", 1, 1)
            outcome.update(report=report, proposals=tuple(proposals), inferred=existing is None)
            return Admission(
                state="active" if report.success else "quarantined",
                proposals=proposals,
                on_commit=self.quality.recorder(
                    None if existing is not None else suite,
                    report.success,
                    report.to_json(),
                    actor,
                ),
            )

        reader = pa.RecordBatchReader.from_batches(up.schema, _counted(up, progress))
        try:
            staged = self.catalog.stage_version(
                name, reader, subject_column, description=description, admit=admit
            )
        finally:
            up.close()
        report = outcome["report"]
        proposals = outcome["proposals"]
        assert isinstance(report, ValidationReport)
        assert isinstance(proposals, tuple)
        return PreparedIngest(staged, report, proposals, bool(outcome["inferred"]), up.format)

    def _previous(self, name: str) -> DatasetInfo | None:
        try:
            versions = self.catalog.versions(name)
        except DatasetNotFound:
            return None
        return versions[-1] if versions else None


def _counted(up: UploadFile, progress: Progress | None) -> Iterator[pa.RecordBatch]:
    for batch in up.batches:
        yield batch
        if progress:
            progress("write", min(up.done, up.progress_total), up.progress_total)
