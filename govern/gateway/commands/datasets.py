"""Datasets: new versions (uploads and registered sources), tags, suites, acceptance."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import rfc8785

from govern.catalog import DatasetInfo
from govern.catalog.service import Source, Staged
from govern.errors import Conflict
from govern.events import (
    DatasetVersionAdded,
    QualityRecorded,
    SuitePut,
    TagsSet,
    VersionAccepted,
)
from govern.gateway.commands.base import CommandBase
from govern.ledger.service import Tx
from govern.quality import Ingestor, IngestResult, Progress, SuiteInfo

__all__ = ["DatasetCommands"]


class DatasetCommands(CommandBase):
    def ingest(
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
    ) -> IngestResult:
        """Register an uploaded file as a new version (see ``govern.quality.ingest``).

        The file is staged, validated and tagged first, outside any transaction. Then, in one,
        the version is stored in its final state (``active``, or ``quarantined`` when its suite
        failed), erasure requests made before it arrived are applied to it (invariant 5), and
        its ``dataset.version`` and ``dataset.quality`` events are written."""
        from govern.catalog.sensitive import SensitiveDataDetector

        settings = self._p.settings
        ingestor = Ingestor(
            self._p.catalog,
            self._p.quality,
            SensitiveDataDetector(settings.detect_sample_rows, settings.detect_ner_rows),
            settings.quality_chunk_rows,
        )
        prepared = ingestor.prepare(
            name,
            path,
            subject_column,
            actor,
            filename=filename,
            description=description,
            unique_columns=unique_columns,
            progress=progress,
        )
        try:

            def change(tx: Tx) -> DatasetInfo:
                info = self._commit_version(tx, prepared.staged, prepared.format, "upload")
                report = prepared.report.summary()
                tx.emit(
                    QualityRecorded(
                        dataset=info.name,
                        version=info.version,
                        suite_inferred=prepared.suite_inferred,
                        success=bool(report["success"]),
                        rows=int(report["rows"]),
                        evaluated=int(report["evaluated"]),
                        failed=tuple(report["failed"]),
                    )
                )
                return info

            info = self._transact(actor, change).value
        finally:
            prepared.staged.discard()
        return IngestResult(
            info, prepared.report, prepared.proposals, prepared.suite_inferred, prepared.format
        )

    def register_dataset(
        self,
        name: str,
        source: Source,
        subject_column: str,
        actor: str,
        *,
        description: str = "",
        tags: Mapping[str, Sequence[str]] | None = None,
    ) -> DatasetInfo:
        """A new version from Arrow data with declared tags and no quality suite (the demo's
        generated datasets); served at once."""
        staged = self._p.catalog.stage_version(
            name, source, subject_column, description=description, tags=tags
        )
        try:
            return self._transact(
                actor, lambda tx: self._commit_version(tx, staged, "arrow", "registered")
            ).value
        finally:
            staged.discard()

    def _commit_version(self, tx: Tx, staged: Staged, fmt: str, source: str) -> DatasetInfo:
        info = self._p.catalog.commit_version(staged, on_rollback=tx.on_rollback)
        # Erasure requests made before this version arrived hold for it too (invariant 5).
        erased = self._p.erasure.apply_to_version(info)
        tx.emit(
            DatasetVersionAdded(
                dataset=info.name,
                version=info.version,
                rows=info.row_count,
                sha256=staged.sha256,
                state=info.state,
                format=fmt,
                source=source,
                erased_rows=erased,
                proposed_tags=tuple(
                    (p.column, p.tag, p.detector, p.score) for p in staged.admission.proposals
                ),
            )
        )
        return info

    def accept_version(self, name: str, version: int, actor: str) -> DatasetInfo:
        """A steward serves a version that failed its suite."""

        def change(tx: Tx) -> DatasetInfo:
            info = self._p.catalog.get(name, version)
            if info.state != "quarantined":
                raise Conflict(
                    f"version {version} of {name!r} is {info.state}; only quarantined versions "
                    "are accepted",
                    details={"dataset": name, "version": version, "state": info.state},
                )
            self._p.quality.mark_accepted(info.version_id, actor)
            accepted = self._p.catalog.set_state(name, version, "active")
            tx.emit(VersionAccepted(dataset=name, version=version))
            return accepted

        return self._transact(actor, change).value

    def put_suite(self, name: str, suite: Mapping[str, Any], actor: str) -> SuiteInfo:
        """Replace a dataset's quality suite (it applies from the dataset's next version)."""

        def change(tx: Tx) -> SuiteInfo:
            info = self._p.quality.put_suite(name, suite, actor)
            tx.emit(
                SuitePut(
                    dataset=name,
                    expectations=len(info.suite["expectations"]),
                    sha256=hashlib.sha256(rfc8785.dumps(dict(info.suite))).hexdigest(),
                )
            )
            return info

        return self._transact(actor, change).value

    def set_tags(self, name: str, column: str, tags: Sequence[str], actor: str) -> DatasetInfo:
        """A steward confirms or edits a column's tags."""

        def change(tx: Tx) -> DatasetInfo:
            info = self._p.catalog.set_tags(name, column, tags)
            tx.emit(TagsSet(dataset=name, column=column, tags=tuple(dict.fromkeys(tags))))
            return info

        return self._transact(actor, change).value
