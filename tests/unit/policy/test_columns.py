from __future__ import annotations

import pytest

from govern.errors import PolicyInvalid
from govern.policy.columns import ColumnRules

RULES = [
    ["p2", "r.sub.role == 'trainer'", "*", "pii.*", "*", "hash"],
    ["p2", "r.sub.role == 'trainer'", "patients", "pii.email", "training", "drop"],
    ["p2", "r.sub.role == 'auditor'", "*", "health", "audit", "redact"],
    ["p2", "r.sub.clearance > 2", "*", "health", "*", "pass"],
]


def decide(subject: dict[str, object], dataset: str, purpose: str) -> dict[str, str]:
    cols = {"email": ["pii.email"], "note": ["health", "pii.freetext"], "n": []}
    return {
        k: v.action for k, v in ColumnRules(RULES).decide(subject, dataset, purpose, cols).items()
    }


def test_the_strictest_matching_rule_wins() -> None:
    trainer = {"id": "t", "role": "trainer", "clearance": 1}
    assert decide(trainer, "patients", "training") == {"email": "drop", "note": "hash", "n": "pass"}
    assert decide(trainer, "chats", "training") == {"email": "hash", "note": "hash", "n": "pass"}


def test_rules_match_on_purpose_and_subject_attributes() -> None:
    auditor = {"id": "a", "role": "auditor", "clearance": 3}
    assert decide(auditor, "patients", "audit")["note"] == "redact"
    assert decide(auditor, "patients", "research")["note"] == "pass"


def test_a_rule_that_cannot_be_evaluated_drops_the_column() -> None:
    # No clearance attribute: Casbin raises evaluating `r.sub.clearance > 2`.
    out = ColumnRules(RULES).decide(
        {"id": "x", "role": "steward"}, "p", "audit", {"note": ["health"]}
    )
    assert out["note"].action == "drop"
    assert "failed" in out["note"].reason


@pytest.mark.parametrize(
    "rule",
    [["p2", "True", "*", "x", "*", "shred"], ["p2", "True", "*", "x"]],
)
def test_bad_column_rules_are_refused(rule: list[str]) -> None:
    with pytest.raises(PolicyInvalid):
        ColumnRules([rule])


def test_a_set_without_column_rules_passes_every_column() -> None:
    decisions = ColumnRules([]).decide(
        {"role": "auditor", "id": "a"}, "chat_logs", "audit", {"email": ["pii.email"], "n": []}
    )
    assert {c: d.action for c, d in decisions.items()} == {"email": "pass", "n": "pass"}
