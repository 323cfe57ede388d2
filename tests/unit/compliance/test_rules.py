"""The rule library: shipped rules load and validate; a bad file is an error naming it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from govern.compliance.rules import RuleLibraryError, load_library
from govern.errors import ValidationError
from govern.resources import policies_dir

RULES = policies_dir() / "rules"
REQUIRED = {
    "gdpr-art6-lawful-basis",
    "gdpr-art9-special-categories",
    "gdpr-art17-erasure",
    "ccpa-opt-out",
    "hipaa-deidentification",
    "euaia-art10-data-governance",
    "licence-compatibility",
}


def test_the_shipped_library_has_the_required_rules_and_more() -> None:
    library = load_library(RULES)
    assert set(library.rules) >= REQUIRED
    assert len(library) >= 10
    for rule in library:
        assert rule.text and rule.law and rule.article and rule.title
        assert rule.non_compliant_when and rule.compliant_when
        assert rule.applies_when.facts <= set(rule.facts)


def test_unknown_rule_ids_are_a_422_naming_them() -> None:
    library = load_library(RULES)
    with pytest.raises(ValidationError) as exc:
        library.select(["gdpr-art6-lawful-basis", "gdpr-art99", "no-such-rule"])
    assert exc.value.http_status == 422
    assert exc.value.details["unknown_rules"] == ["gdpr-art99", "no-such-rule"]
    assert "gdpr-art99" in exc.value.message


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


GOOD = """
id: my-rule
law: Test
article: "1"
title: A rule
text: Some words.
facts: [personal_data, consent]
applies_when: personal_data
non_compliant_when:
  - when: consent == 'refused'
    reason: refused
compliant_when:
  - when: consent == 'given'
    reason: given
question: Is it fine?
"""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("consent == 'refused'", "consent == 'maybe'"), "consent takes"),
        (("consent == 'refused'", "shoe_size == 'large'"), "not listed in facts"),
        (("[personal_data, consent]", "[personal_data, consent, shoe_size]"), "unknown facts"),
        (("applies_when: personal_data", "applies_when: personal_data <"), "does not parse"),
        (("title: A rule\n", ""), "missing keys: title"),
        (("question: Is it fine?", "question: Is it fine?\nextra: 1"), "unknown keys: extra"),
        (("id: my-rule", "id: other-rule"), "named after its id"),
        (("    reason: refused", "    reason: ''"), "reason must be a non-empty string"),
    ],
)
def test_a_bad_rule_file_is_an_error_naming_the_file(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    directory = _copy(tmp_path)
    (directory / "my-rule.yaml").write_text(GOOD.replace(*change))
    with pytest.raises(RuleLibraryError) as exc:
        load_library(directory)
    assert "my-rule.yaml" in exc.value.message
    assert message in exc.value.message


def test_a_good_extra_rule_loads(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    (directory / "my-rule.yaml").write_text(GOOD)
    assert "my-rule" in load_library(directory).rules


def test_yaml_that_does_not_parse_is_named(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    (directory / "broken.yaml").write_text("id: [unclosed\n")
    with pytest.raises(RuleLibraryError, match=r"broken\.yaml"):
        load_library(directory)


def test_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuleLibraryError, match="no rule files"):
        load_library(tmp_path)
