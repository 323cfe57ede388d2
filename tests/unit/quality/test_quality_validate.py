"""Suites inferred from a first version catch every planted defect in later ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from govern.catalog.names import ROW_ID
from govern.catalog.types import normalise_schema
from govern.errors import ValidationError
from govern.quality.suite import check_suite, infer_suite, types_of
from govern.quality.validate import validate_file
from tests.unit.quality.planted import measurements, with_column


def stage(tmp_path: Path, table: pa.Table, name: str = "v.parquet") -> Path:
    """Write a table as the catalog stages a version: normalised types plus row ids."""
    t = table.cast(normalise_schema(table.schema))
    t = t.append_column(ROW_ID, pa.array(range(t.num_rows), pa.int64()))
    path = tmp_path / name
    pq.write_table(t, path, row_group_size=256)
    return path


def baseline(tmp_path: Path, unique: tuple[str, ...] = ()) -> dict[str, Any]:
    t = measurements()
    return infer_suite(stage(tmp_path, t, "v1.parquet"), types_of(t.schema), "patient_id", unique)


def failed(report: Any) -> set[tuple[str, str | None]]:
    return {(r["type"], r["kwargs"].get("column")) for r in report.failed}


def test_the_inferred_suite_passes_its_own_version_and_reads_as_expected(tmp_path: Path) -> None:
    suite = baseline(tmp_path)
    kinds = {(e["type"], e["kwargs"].get("column")) for e in suite["expectations"]}
    assert ("expect_column_values_to_not_be_null", "patient_id") in kinds
    assert ("expect_column_values_to_be_unique", "reading_id") in kinds  # an id, and unique
    assert ("expect_column_values_to_be_unique", "patient_id") not in kinds  # repeats
    assert ("expect_column_values_to_be_between", "heart_rate") in kinds
    assert ("expect_column_values_to_be_between", "reading_id") not in kinds  # ids grow
    between = next(
        e
        for e in suite["expectations"]
        if e["kwargs"].get("column") == "heart_rate"
        and e["type"] == "expect_column_values_to_be_between"
    )
    assert between["kwargs"]["min_value"] < 50 and between["kwargs"]["max_value"] > 120
    assert between["kwargs"]["min_value"] >= 0  # never negative before, never negative now
    report = validate_file(stage(tmp_path, measurements(), "again.parquet"), suite)
    assert report.success, report.failed


@pytest.mark.parametrize("chunk_rows", [1_000_000, 300])
def test_every_planted_defect_is_caught_with_its_row_ids(tmp_path: Path, chunk_rows: int) -> None:
    suite = baseline(tmp_path)
    t = measurements()
    subject = t.column("patient_id").to_pylist()
    subject[5] = None
    subject[777] = None
    rate = t.column("heart_rate").to_pylist()
    rate[10] = 900
    rate[901] = -3
    ids = t.column("reading_id").to_pylist()
    ids[600] = ids[599]
    t = with_column(t, "patient_id", subject)
    t = with_column(t, "heart_rate", rate)
    t = with_column(t, "reading_id", pa.array(ids, pa.int64()))
    t = with_column(t, "temperature", [str(v) for v in t.column("temperature").to_pylist()])
    report = validate_file(stage(tmp_path, t), suite, chunk_rows=chunk_rows)
    assert not report.success
    assert failed(report) == {
        ("expect_column_values_to_not_be_null", "patient_id"),
        ("expect_column_values_to_be_between", "heart_rate"),
        ("expect_column_values_to_be_unique", "reading_id"),
        ("expect_column_values_to_be_in_type_list", "temperature"),
        # Strings compared with a numeric range raise inside GE: a failure, never a pass.
        ("expect_column_values_to_be_between", "temperature"),
    }
    by = {(r["type"], r["kwargs"].get("column")): r for r in report.results}
    nulls = by[("expect_column_values_to_not_be_null", "patient_id")]
    assert nulls["unexpected_count"] == 2 and nulls["unexpected_row_ids"] == [5, 777]
    ranges = by[("expect_column_values_to_be_between", "heart_rate")]
    assert ranges["unexpected_count"] == 2 and sorted(ranges["unexpected_row_ids"]) == [10, 901]
    dupes = by[("expect_column_values_to_be_unique", "reading_id")]
    assert sorted(dupes["unexpected_row_ids"]) == [599, 600]
    if chunk_rows == 300:
        assert report.chunks == 4


def test_a_missing_column_and_an_empty_version_fail(tmp_path: Path) -> None:
    suite = baseline(tmp_path)
    t = measurements().drop_columns(["ward"])
    assert ("expect_table_columns_to_match_set", None) in failed(
        validate_file(stage(tmp_path, t, "a.parquet"), suite)
    )
    empty = measurements().slice(0, 0)
    report = validate_file(stage(tmp_path, empty, "b.parquet"), suite)
    assert ("expect_table_row_count_to_be_between", None) in failed(report)


def test_declared_unique_columns_are_checked_and_mostly_is_computed_over_all_chunks(
    tmp_path: Path,
) -> None:
    suite = baseline(tmp_path, unique=("ward",))
    assert ("expect_column_values_to_be_unique", "ward") in {
        (e["type"], e["kwargs"].get("column")) for e in suite["expectations"]
    }
    # 1 null in 1000 rows: fine at mostly=0.99 overall, though one 300-row chunk alone has
    # a different share; and not fine at mostly=1.
    t = measurements()
    ward = t.column("ward").to_pylist()
    ward[0] = None
    path = stage(tmp_path, with_column(t, "ward", ward))
    for mostly, ok in [(0.99, True), (1.0, False)]:
        s = check_suite(
            {
                "expectations": [
                    {
                        "type": "expect_column_values_to_not_be_null",
                        "kwargs": {"column": "ward", "mostly": mostly},
                    }
                ]
            }
        )
        assert validate_file(path, s, chunk_rows=300).success is ok


@pytest.mark.parametrize(
    "doc",
    [
        {"expectations": [{"type": "expect_the_moon"}]},
        {"expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {}}]},
        {"expectations": [{"type": "expect_column_values_to_be_between", "kwargs": {"colum": 1}}]},
        {"nope": []},
        {
            "expectations": [
                {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
                {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
            ]
        },
    ],
)
def test_invalid_suites_are_refused_with_a_422(doc: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        check_suite(doc)
