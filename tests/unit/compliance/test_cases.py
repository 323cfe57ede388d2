"""The labelled evaluation set: its shape, and what the deterministic conditions do with it."""

from __future__ import annotations

from collections import Counter

from govern.compliance import Assessor, Calibration, load_library
from govern.compliance.cases import default_cases_dir, default_prose_dir, load_cases
from govern.compliance.model.base import NoModel
from govern.resources import policies_dir

LIBRARY = load_library(policies_dir() / "rules")
CASES = load_cases(default_cases_dir(), LIBRARY)


def test_there_are_at_least_60_cases_of_every_kind_across_every_rule() -> None:
    assert len(CASES) >= 60
    kinds = Counter(c.kind for c in CASES)
    assert kinds["clear_violation"] >= 15 and kinds["clear_fine"] >= 15 and kinds["borderline"] >= 8
    assert {r for c in CASES for r in c.expect} == set(LIBRARY.rules)
    splits = Counter(c.split for c in CASES)
    assert splits["fit"] >= 20 and splits["eval"] >= 20


def test_conditions_alone_never_call_a_clear_violation_compliant_and_get_clear_cases_right() -> (
    None
):
    a = Assessor(LIBRARY, NoModel, Calibration())
    right = total = 0
    for case in CASES:
        for v in a.assess(case.input(), list(case.expect), mode="conditions"):
            if case.kind == "clear_violation":
                assert v.verdict != "compliant", case.id
            if case.clear:
                total += 1
                right += v.verdict == case.expect[v.rule]
    assert right / total >= 0.9


def test_borderline_cases_are_never_decided_compliant_by_the_full_pipeline_without_a_model() -> (
    None
):
    a = Assessor(LIBRARY, NoModel, Calibration())
    for case in CASES:
        if case.kind == "borderline":
            for v in a.assess(case.input(), list(case.expect)):
                assert v.verdict == "needs_review", (case.id, v.rule, v.rationale)


PROSE = load_cases(default_prose_dir(), LIBRARY)


def test_the_prose_set_has_200_described_cases_across_every_rule_in_both_splits() -> None:
    assert len(PROSE) >= 200
    assert all(c.description and not c.facts and c.columns is None for c in PROSE)
    kinds = Counter(c.kind for c in PROSE)
    assert kinds["clear_violation"] >= 60 and kinds["clear_fine"] >= 60
    assert kinds["borderline"] >= 20
    for split in ("fit", "eval"):
        assert {r for c in PROSE if c.split == split for r in c.expect} == set(LIBRARY.rules)
    # Injection attempts are part of the set, and all of them are clear violations.
    injected = [c for c in PROSE if "compliant" in c.description.lower()]
    assert len(injected) >= 11 and all(c.kind == "clear_violation" for c in injected)
