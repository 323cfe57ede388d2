"""The rule condition language: parsing a closed subset, and Kleene three-valued evaluation."""

from __future__ import annotations

import pytest

from govern.compliance.conditions import ConditionError, parse_condition


def test_a_comparison_is_unknown_until_its_fact_is_known() -> None:
    cond = parse_condition("legal_basis == 'consent' and consent in ['refused', 'withdrawn']")
    assert cond.evaluate({}) == (None, frozenset())
    assert cond.evaluate({"legal_basis": "consent"})[0] is None
    outcome, used = cond.evaluate({"legal_basis": "consent", "consent": "refused"})
    assert outcome is True and used == {"legal_basis", "consent"}


def test_and_is_false_as_soon_as_one_known_part_is_false() -> None:
    cond = parse_condition("legal_basis == 'consent' and consent == 'refused'")
    outcome, used = cond.evaluate({"legal_basis": "contract"})
    assert outcome is False and used == {"legal_basis"}


def test_or_is_true_as_soon_as_one_known_part_is_true() -> None:
    cond = parse_condition("web_scraped == False or tdm_opt_out_respected")
    assert cond.evaluate({"tdm_opt_out_respected": True})[0] is True
    assert cond.evaluate({"web_scraped": True})[0] is None
    assert cond.evaluate({"web_scraped": True, "tdm_opt_out_respected": False})[0] is False


def test_not_keeps_unknown_unknown() -> None:
    cond = parse_condition("not personal_data")
    assert cond.evaluate({})[0] is None
    assert cond.evaluate({"personal_data": False})[0] is True


def test_a_bare_fact_is_true_only_for_true() -> None:
    cond = parse_condition("personal_data")
    assert cond.evaluate({"personal_data": True})[0] is True
    assert cond.evaluate({"personal_data": "yes"})[0] is False


def test_not_in_and_not_equal() -> None:
    assert parse_condition("licence_class not in ['permissive']").evaluate(
        {"licence_class": "copyleft"}
    )[0]
    assert parse_condition("consent != 'given'").evaluate({"consent": "given"})[0] is False


def test_facts_and_comparisons_are_listed_for_validation() -> None:
    cond = parse_condition("a == 'x' or (b and not c in ['y', 'z'])")
    assert cond.facts == {"a", "b", "c"}
    assert ("c", ("y", "z")) in cond.comparisons


@pytest.mark.parametrize(
    "source",
    [
        "",
        "__import__('os').system('true')",
        "a.b == 'x'",
        "a < 'x'",
        "a == b",
        "a == 'x' == 'y'",
        "a == ['x', 'y']",
        "a in []",
        "a == 3",
        "a +",
        "lambda: 1",
    ],
)
def test_anything_outside_the_language_is_refused(source: str) -> None:
    with pytest.raises(ConditionError):
        parse_condition(source)
