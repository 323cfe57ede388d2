"""Quality: Great Expectations suites per dataset, run on every new version at ingestion."""

from __future__ import annotations

from govern.quality.ingest import Ingestor, IngestResult, PreparedIngest, Progress
from govern.quality.store import QualityStore, ResultInfo, SuiteInfo
from govern.quality.suite import check_suite, infer_suite
from govern.quality.validate import ValidationReport, validate_file

__all__ = [
    "IngestResult",
    "Ingestor",
    "PreparedIngest",
    "Progress",
    "QualityStore",
    "ResultInfo",
    "SuiteInfo",
    "ValidationReport",
    "check_suite",
    "infer_suite",
    "validate_file",
]
