"""Facts from the catalog, from the request and from exact phrases in a description."""

from __future__ import annotations

import pytest

from govern.catalog import ColumnInfo
from govern.catalog.profile import VersionProfile
from govern.compliance.facts import (
    catalog_facts,
    cue_facts,
    eu_places,
    licence_class,
    request_facts,
)
from govern.errors import ValidationError

PATIENTS = [
    ColumnInfo("patient_id", "BIGINT", ("pii.id",)),
    ColumnInfo("admitted", "DATE", ("pii.date",)),
    ColumnInfo("note", "VARCHAR", ("health", "pii.freetext")),
]


def _by_name(facts: list) -> dict:  # type: ignore[type-arg]
    return {f.name: f.value for f in facts}


def test_catalog_tags_state_personal_special_and_identifying_columns() -> None:
    facts = _by_name(catalog_facts("patient_notes", PATIENTS, "patient_id"))
    assert facts["personal_data"] is True
    assert facts["special_categories"] is True
    assert facts["health_data"] is True
    assert facts["direct_identifiers"] is True
    assert facts["identifiers_present"] is True
    assert facts["erasure_honoured"] is True  # a governed subject column


def test_a_dataset_without_personal_tags_states_no_personal_data() -> None:
    cols = [ColumnInfo("station", "VARCHAR"), ColumnInfo("temp", "DOUBLE")]
    facts = _by_name(catalog_facts("weather", cols, "station"))
    assert facts["personal_data"] is False and facts["special_categories"] is False
    assert "erasure_honoured" not in facts


def _profile(places: dict[str, tuple[str, ...]], subjects: int = 3) -> VersionProfile:
    return VersionProfile("people", 2, rows=10, subjects=subjects, subject_column="uid",
                          places=places)  # fmt: skip


def test_a_country_column_holding_an_eu_value_states_gdpr_scope() -> None:
    cols = [ColumnInfo("uid", "VARCHAR"), ColumnInfo("country", "VARCHAR")]
    for values in (("DE", "US"), ("Japan", "norway"), ("eu", "apac", "us"), ("FRA",)):
        facts = catalog_facts("people", cols, "uid", _profile({"country": values}))
        (scope,) = [f for f in facts if f.name == "gdpr_scope"]
        assert scope.value is True and scope.source == "catalog", values
        assert "column 'country' of version 2 holds EU/EEA values" in scope.evidence


def test_places_outside_the_eea_state_nothing_about_gdpr_scope() -> None:
    # Data can show that EU people are concerned, never that the controller is not in the EU.
    cols = [ColumnInfo("uid", "VARCHAR"), ColumnInfo("country", "VARCHAR")]
    for values in (("US", "JP", "GB", "CH"), ("europe",), ()):
        facts = _by_name(catalog_facts("people", cols, "uid", _profile({"country": values})))
        assert "gdpr_scope" not in facts, values


def test_the_subject_column_with_subjects_states_personal_data_with_the_counts() -> None:
    cols = [ColumnInfo("station", "VARCHAR"), ColumnInfo("temp", "DOUBLE")]
    facts = catalog_facts("weather", cols, "station", _profile({}, subjects=3))
    (personal,) = [f for f in facts if f.name == "personal_data"]
    assert personal.value is True
    assert "version 2 holds 10 rows of 3 data subjects (subject column 'uid')" in personal.evidence
    empty = _by_name(catalog_facts("weather", cols, "station", _profile({}, subjects=0)))
    assert empty["personal_data"] is False


def test_eu_places_reads_codes_and_names_in_any_case() -> None:
    values = ["DE", "deu", "Germany", "Czech  Republic", "EL", "EEA", "US", "GB", "Europe", "de-1"]
    assert eu_places(values) == ["DE", "deu", "Germany", "Czech  Republic", "EL", "EEA"]


def test_licence_tags_give_the_licence_or_the_strictest_class() -> None:
    one = [ColumnInfo("content", "VARCHAR", ("licence.mit",))]
    assert _by_name(catalog_facts("code", one, None))["licence"] == "mit"
    two = [
        ColumnInfo("a", "VARCHAR", ("licence.mit",)),
        ColumnInfo("b", "VARCHAR", ("licence.cc-by-nc-4.0",)),
    ]
    assert _by_name(catalog_facts("code", two, None))["licence_class"] == "noncommercial"


@pytest.mark.parametrize(
    ("licence", "kind"),
    [
        ("MIT", "permissive"),
        ("apache-2.0", "permissive"),
        ("cc-by-nc-sa-4.0", "noncommercial"),
        ("cc-by-nd-4.0", "noderivatives"),
        ("gpl-3.0-only", "copyleft"),
        ("all-rights-reserved", "proprietary"),
        ("acme-licence", None),
    ],
)
def test_licence_classes(licence: str, kind: str | None) -> None:
    assert licence_class(licence) == kind


def test_request_facts_are_parsed_into_their_domains() -> None:
    facts = _by_name(
        request_facts(
            {
                "description": "ignored here",
                "consent": "Given",
                "personal_data": "yes",
                "gdpr_scope": True,
                "legal_basis": "legitimate interests",
                "licence": "MIT",
                "hipaa_covered": "unknown",
            }
        )
    )
    assert facts == {
        "consent": "given",
        "personal_data": True,
        "gdpr_scope": True,
        "legal_basis": "legitimate_interests",
        "licence": "mit",
    }


def test_unknown_facts_and_values_are_a_422_naming_them() -> None:
    with pytest.raises(ValidationError) as exc:
        request_facts({"consent": "perhaps", "shoe_size": 44, "personal_data": "sometimes"})
    details = exc.value.details
    assert details["unknown_facts"] == ["shoe_size"]
    assert {b["fact"] for b in details["bad_values"]} == {"consent", "personal_data"}


def test_a_cue_states_a_value_from_an_exact_phrase() -> None:
    facts, notes = cue_facts("Every patient gave explicit consent.", ["consent", "art9_condition"])
    assert _by_name(facts) == {"consent": "given", "art9_condition": "explicit_consent"}
    assert all(f.source == "text" and f.stated for f in facts) and not notes


def test_a_negated_phrase_states_nothing() -> None:
    facts, _ = cue_facts("There is no explicit consent from anyone.", ["art9_condition"])
    assert facts == []
    facts, _ = cue_facts("We did not obtain consent.", ["consent"])
    assert "given" not in _by_name(facts).values()


def test_phrases_pointing_two_ways_leave_the_fact_unknown() -> None:
    text = "Some users gave consent; others withdrew their consent."
    facts, notes = cue_facts(text, ["consent"])
    assert facts == [] and "several values of consent" in notes[0]


def test_no_description_states_nothing() -> None:
    assert cue_facts("", ["consent"]) == ([], [])


def test_a_phrase_after_outside_or_except_states_nothing() -> None:
    assert cue_facts("Only users outside California are included.", ["california_consumers"]) == (
        [],
        [],
    )
