"""Suites per dataset and validation results per version, in the metadata store."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from govern.catalog.names import validate_dataset_name
from govern.errors import DatasetNotFound, NotFound, VersionNotFound
from govern.quality.suite import check_suite
from govern.store.db import Database
from govern.store.models import (
    Dataset,
    DatasetVersion,
    QualityResult,
    QualitySuite,
    as_utc,
    utcnow,
)

__all__ = ["QualityStore", "ResultInfo", "SuiteInfo"]


@dataclass(frozen=True)
class SuiteInfo:
    dataset: str
    suite: dict[str, Any]
    inferred: bool
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True)
class ResultInfo:
    dataset: str
    version: int
    state: str
    success: bool
    result: dict[str, Any]
    accepted_by: str | None
    accepted_at: datetime | None


class QualityStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _dataset(self, s: Session, name: str) -> Dataset:
        validate_dataset_name(name)
        ds = s.scalar(select(Dataset).where(Dataset.name == name))
        if ds is None:
            raise DatasetNotFound(f"no dataset {name!r}", details={"dataset": name})
        return ds

    def suite(self, name: str) -> SuiteInfo | None:
        """The dataset's suite; None for a dataset not yet registered."""
        validate_dataset_name(name)
        with self.db.session() as s:
            ds = s.scalar(select(Dataset).where(Dataset.name == name))
            if ds is None:
                return None
            row = s.scalar(select(QualitySuite).where(QualitySuite.dataset_id == ds.id))
            if row is None:
                return None
            return SuiteInfo(
                name, dict(row.suite), row.inferred, row.updated_by, as_utc(row.updated_at)
            )

    def get_suite(self, name: str) -> SuiteInfo:
        with self.db.session() as s:
            self._dataset(s, name)
        found = self.suite(name)
        if found is None:
            raise NotFound(f"dataset {name!r} has no quality suite", details={"dataset": name})
        return found

    def put_suite(self, name: str, doc: Mapping[str, Any], by: str) -> SuiteInfo:
        """A steward's suite replaces the dataset's; it applies from the next version on."""
        suite = check_suite(doc)
        with self.db.session() as s:
            ds = self._dataset(s, name)
            row = s.scalar(select(QualitySuite).where(QualitySuite.dataset_id == ds.id))
            if row is None:
                s.add(QualitySuite(dataset_id=ds.id, suite=suite, inferred=False, updated_by=by))
            else:
                row.suite, row.inferred, row.updated_by, row.updated_at = (
                    suite,
                    False,
                    by,
                    utcnow(),
                )
        return self.get_suite(name)

    def recorder(
        self, suite: Mapping[str, Any] | None, success: bool, result: Mapping[str, Any], by: str
    ) -> Callable[[Session, int, int], None]:
        """Writes, inside the catalog's transaction for the new version, its result and (for
        a dataset's first version) the inferred suite."""

        def write(s: Session, dataset_id: int, version_id: int) -> None:
            if suite is not None:
                s.add(
                    QualitySuite(
                        dataset_id=dataset_id, suite=dict(suite), inferred=True, updated_by=by
                    )
                )
            s.add(QualityResult(version_id=version_id, success=success, result=dict(result)))

        return write

    def result(self, name: str, version: int) -> ResultInfo:
        with self.db.session() as s:
            ds = self._dataset(s, name)
            v = s.scalar(
                select(DatasetVersion).where(
                    DatasetVersion.dataset_id == ds.id, DatasetVersion.version == version
                )
            )
            if v is None:
                raise VersionNotFound(
                    f"dataset {name!r} has no version {version}",
                    details={"dataset": name, "version": version},
                )
            row = s.scalar(select(QualityResult).where(QualityResult.version_id == v.id))
            if row is None:
                raise NotFound(
                    f"version {version} of {name!r} was registered without a quality check",
                    details={"dataset": name, "version": version},
                )
            return ResultInfo(
                name,
                version,
                v.state,
                row.success,
                dict(row.result),
                row.accepted_by,
                as_utc(row.accepted_at) if row.accepted_at is not None else None,
            )

    def mark_accepted(self, version_id: int, by: str) -> None:
        with self.db.session() as s:
            row = s.scalar(select(QualityResult).where(QualityResult.version_id == version_id))
            if row is not None:
                row.accepted_by, row.accepted_at = by, utcnow()
