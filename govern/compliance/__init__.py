"""Compliance checks: a legal rule library, facts, verdicts, reviews (see docs/compliance.md)."""

from __future__ import annotations

from typing import Any

from govern.catalog import Catalog
from govern.compliance.calibration import Calibration
from govern.compliance.holder import ModelHolder, ModelStatus
from govern.compliance.pipeline import AssessmentInput, Assessor, Verdict
from govern.compliance.rules import Rule, RuleLibrary, RuleLibraryError, load_library
from govern.compliance.service import (
    AssessmentInfo,
    AssessmentRun,
    ComplianceService,
    OpenVerdict,
    ReviewInfo,
)
from govern.resources import policies_dir
from govern.settings import Settings
from govern.store.db import Database

__all__ = [
    "AssessmentInfo",
    "AssessmentInput",
    "AssessmentRun",
    "Assessor",
    "Calibration",
    "ComplianceService",
    "ModelHolder",
    "ModelStatus",
    "OpenVerdict",
    "ReviewInfo",
    "Rule",
    "RuleLibrary",
    "RuleLibraryError",
    "Verdict",
    "load_library",
    "open_assessor",
    "open_compliance",
    "rules_dir",
]


def rules_dir(settings: Settings) -> Any:
    return settings.compliance_rules_dir or policies_dir() / "rules"


def open_compliance(
    settings: Settings,
    db: Database,
    catalog: Catalog,
) -> ComplianceService:
    assessor, holder = open_assessor(settings)
    return ComplianceService(
        db,
        catalog,
        assessor.library,
        assessor,
        refresh_seconds=settings.compliance_refresh_seconds,
        models=holder,
    )


def open_assessor(settings: Settings) -> tuple[Assessor, ModelHolder]:
    """The rule library, the calibration and the model, as the settings name them (the model
    loads on first use)."""
    directory = rules_dir(settings)
    library = load_library(directory)
    calibration = Calibration.load(
        settings.compliance_calibration_file or directory / "calibration.json"
    )
    holder = ModelHolder(settings)
    prose = None
    if settings.compliance_prose_reader:
        from govern.compliance.prose import ProseReader, Trust

        prose = ProseReader(Trust.load(directory / "prose_trust.json"))
    assessor = Assessor(
        library,
        holder.get,
        calibration,
        threshold=settings.compliance_confidence_threshold,
        max_description_chars=settings.compliance_max_description_chars,
        max_questions=settings.compliance_max_model_questions,
        prose=prose,
    )
    return assessor, holder
