"""Labelled cases: the evaluation set and the calibration data (``tests/compliance/cases``).

Each YAML file holds a list of cases::

    - id: art6-consent-refused
      kind: clear_violation          # clear_violation | clear_fine | borderline
      purpose: training
      dataset:                       # optional: a catalog entry to take tags from
        name: chat_logs
        subject_column: user_id
        columns: {user_id: [pii.id], email: [pii.email]}
      facts: {legal_basis: consent}  # structured facts as a request would send them
      description: "Users refused consent to training."
      says: {consent: refused}       # what the description states (calibrates fact questions)
      expect: {gdpr-art6-lawful-basis: non_compliant}

A case is in the ``fit`` split (used to calibrate) or the ``eval`` split (held out), by a hash
of its id, so the split is stable as cases are added.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from govern.catalog import ColumnInfo
from govern.compliance.facts import FACTS
from govern.compliance.inputs import AssessmentInput
from govern.compliance.rules import RuleLibrary
from govern.errors import ConfigError
from govern.resources import policies_dir

__all__ = ["Case", "default_cases_dir", "default_prose_dir", "label_for", "load_cases"]

Kind = Literal["clear_violation", "clear_fine", "borderline"]
_KINDS = ("clear_violation", "clear_fine", "borderline")
_VERDICTS = ("compliant", "non_compliant", "needs_review")


def default_cases_dir() -> Path:
    return policies_dir().parent / "tests" / "compliance" / "cases"


def default_prose_dir() -> Path:
    """Cases described in words alone (no structured facts, no catalog), for the prose reader."""
    return policies_dir().parent / "tests" / "compliance" / "prose"


@dataclass(frozen=True)
class Case:
    id: str
    kind: Kind
    purpose: str
    expect: Mapping[str, str]
    facts: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    says: Mapping[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    subject_column: str | None = None
    columns: tuple[ColumnInfo, ...] | None = None

    @property
    def split(self) -> Literal["fit", "eval"]:
        return "fit" if hashlib.sha256(self.id.encode()).digest()[0] % 2 == 0 else "eval"

    @property
    def clear(self) -> bool:
        return self.kind != "borderline"

    def input(self) -> AssessmentInput:
        return AssessmentInput(
            purpose=self.purpose,
            facts=dict(self.facts),
            description=self.description,
            dataset=self.dataset,
            columns=self.columns,
            subject_column=self.subject_column,
        )


def label_for(fact: str, value: Any) -> str | None:
    """The model label that states ``value`` for ``fact`` ('unknown' for None), if any."""
    spec = FACTS[fact]
    if value is None:
        return "unknown" if "unknown" in spec.labels else None
    if value == "withdrawn" and fact == "consent":
        value = "refused"  # the model's label set folds withdrawn into refused
    for label, v in spec.labels.items():
        if v == value:
            return label
    return None


def load_cases(directory: Path, library: RuleLibrary) -> list[Case]:
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise ConfigError(f"no case files in {directory}")
    out: list[Case] = []
    seen: set[str] = set()
    for path in files:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(raw, list):
            raise ConfigError(f"{path.name}: must be a list of cases")
        for i, item in enumerate(raw):
            out.append(_case(path, i, item, library, seen))
    return out


def _case(path: Path, i: int, item: Any, library: RuleLibrary, seen: set[str]) -> Case:
    where = f"{path.name}[{i}]"
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: a case must be a mapping")
    cid = str(item.get("id", ""))
    if not cid or cid in seen:
        raise ConfigError(f"{where}: missing or repeated id {cid!r}")
    seen.add(cid)
    kind = item.get("kind")
    if kind not in _KINDS:
        raise ConfigError(f"{where}: kind must be one of {_KINDS}")
    expect = item.get("expect") or {}
    if not isinstance(expect, dict) or not expect:
        raise ConfigError(f"{where}: expect must map rule ids to verdicts")
    for rule, verdict in expect.items():
        if rule not in library.rules or verdict not in _VERDICTS:
            raise ConfigError(f"{where}: bad expectation {rule}: {verdict}")
    says = item.get("says") or {}
    for fact in says:
        if fact not in FACTS:
            raise ConfigError(f"{where}: says names unknown fact {fact!r}")
    ds = item.get("dataset")
    columns: tuple[ColumnInfo, ...] | None = None
    name = subject = None
    if ds is not None:
        columns = tuple(
            ColumnInfo(name=c, type="VARCHAR", tags=tuple(sorted(tags or [])))
            for c, tags in (ds.get("columns") or {}).items()
        )
        name = str(ds.get("name", "dataset"))
        subject = ds.get("subject_column")
    return Case(
        id=cid,
        kind=kind,
        purpose=str(item.get("purpose", "training")),
        expect=dict(expect),
        facts=dict(item.get("facts") or {}),
        description=str(item.get("description") or ""),
        says=dict(says),
        dataset=name,
        subject_column=subject,
        columns=columns,
    )


def rules_of(cases: Sequence[Case]) -> set[str]:
    return {r for c in cases for r in c.expect}
