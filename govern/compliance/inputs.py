"""What an assessment is asked about: its own module, so that the pipeline and the labelled
cases both import it without importing each other."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from govern.catalog import ColumnInfo
from govern.catalog.profile import VersionProfile

__all__ = ["AssessmentInput"]


@dataclass(frozen=True)
class AssessmentInput:
    purpose: str
    facts: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    dataset: str | None = None
    columns: Sequence[ColumnInfo] | None = None  # None: no catalog facts
    subject_column: str | None = None
    profile: VersionProfile | None = None  # the version's own values (counts, places)
