"""Sensitive-data detection over generated data with planted PII."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from govern.catalog.sensitive import SensitiveDataDetector, name_tags
from govern.quality.suite import types_of
from tests.unit.quality.planted import PEOPLE_TRUTH, people


def _detect(tmp_path: Path, table: pa.Table, subject: str) -> set[tuple[str, str]]:
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    found = SensitiveDataDetector(sample_rows=300).detect(path, types_of(table.schema), subject)
    return {(p.column, p.tag) for p in found}


def test_planted_pii_is_found_with_full_recall_and_high_precision(tmp_path: Path) -> None:
    got = _detect(tmp_path, people(400), "customer_id")
    true_positives = got & PEOPLE_TRUTH
    precision = len(true_positives) / len(got)
    recall = len(true_positives) / len(PEOPLE_TRUTH)
    print(f"tagging precision {precision:.3f} recall {recall:.3f} over {len(PEOPLE_TRUTH)} tags")
    assert recall == 1.0, PEOPLE_TRUTH - got
    assert precision >= 0.9, got - PEOPLE_TRUTH
    # The decoys (product codes, amounts, URLs, statuses, PII-free text) get nothing.
    decoys = {"product", "amount", "homepage", "status", "summary", "record_id"}
    assert not {c for c, _ in got} & decoys


def test_values_are_recognised_whatever_the_column_is_called(tmp_path: Path) -> None:
    t = people(200)
    renamed = t.rename_columns([f"c{i}" for i in range(t.num_columns)])
    got = _detect(tmp_path, renamed, "c1")
    names = dict(zip(t.column_names, renamed.column_names, strict=True))
    for column, tag in [
        ("contact", "pii.email"),
        ("reach_at", "pii.phone"),
        ("tax_number", "pii.national_id"),
        ("payment", "pii.financial"),
        ("last_login_from", "pii.ip"),
        ("visit_code", "health"),
        ("comments", "pii.freetext"),
    ]:
        assert (names[column], tag) in got, (column, tag)


def test_person_names_in_values_need_the_column_name(tmp_path: Path) -> None:
    # A blank spaCy pipeline has no NER: names are found by column name only (documented).
    t = pa.table({"uid": ["a", "b"], "who": ["Ana Novak", "Ben Smith"], "surname": ["X", "Y"]})
    got = _detect(tmp_path, t, "uid")
    assert ("surname", "pii.name") in got
    assert not any(c == "who" for c, _ in got)


@pytest.mark.parametrize(
    ("column", "tags"),
    [
        ("email", ["pii.email"]),
        ("user_email", ["pii.email"]),
        ("mobile_phone", ["pii.phone"]),
        ("first_name", ["pii.name"]),
        ("file_name", []),
        ("ssn", ["pii.national_id"]),
        ("ip_address", ["pii.ip"]),
        ("email_address", ["pii.email"]),
        ("street_address", ["pii.address"]),
        ("date_of_birth", ["pii.date"]),
        ("zip", ["pii.quasi"]),
        ("diagnosis_code", ["health"]),
        ("patient_id", ["pii.id"]),
        ("amount", []),
    ],
)
def test_column_names_propose_what_they_say(column: str, tags: list[str]) -> None:
    assert name_tags(column) == tags
