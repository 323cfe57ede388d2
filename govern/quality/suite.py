"""Quality suites: which Great Expectations expectations a dataset's versions must meet.

A suite is kept as JSON, ``{"expectations": [{"type": ..., "kwargs": {...}, "meta": {...}}]}``,
the shape of Great Expectations' own ``ExpectationConfiguration``. Every expectation is checked
by building it with Great Expectations (so a steward's typo is a 422 at ``PUT``, not a failure at
the next upload) and must be of a kind the validator knows how to run over data of any size:

- ``ROW`` expectations hold or fail row by row, so they run chunk by chunk and their counts add;
- ``SCHEMA`` expectations depend on column names and types only, so they run on one chunk;
- ``WHOLE`` expectations need a whole column (uniqueness, min/max/mean, row count), so they run
  on a frame holding only that column, read whole.

The default suite is inferred from the first version: the subject column is never null, columns
keep their names and types, numeric values stay in the observed range with headroom, identifier
columns stay unique.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb

from govern.catalog.names import parquet_source
from govern.catalog.types import duckdb_type
from govern.errors import ValidationError

__all__ = [
    "PANDAS_TYPES",
    "ROW",
    "SCHEMA",
    "WHOLE",
    "check_kwargs",
    "check_suite",
    "infer_suite",
    "kind_of",
]

ROW = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_null",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_not_match_regex",
        "expect_column_values_to_match_regex_list",
        "expect_column_value_lengths_to_be_between",
        "expect_column_value_lengths_to_equal",
        "expect_column_pair_values_to_be_equal",
        "expect_column_pair_values_a_to_be_greater_than_b",
    }
)
SCHEMA = frozenset(
    {
        "expect_column_to_exist",
        "expect_column_values_to_be_in_type_list",
        "expect_column_values_to_be_of_type",
        "expect_table_columns_to_match_set",
        "expect_table_columns_to_match_ordered_list",
        "expect_table_column_count_to_equal",
        "expect_table_column_count_to_be_between",
    }
)
WHOLE = frozenset(
    {
        "expect_column_values_to_be_unique",
        "expect_compound_columns_to_be_unique",
        "expect_select_column_values_to_be_unique_within_record",
        "expect_table_row_count_to_be_between",
        "expect_table_row_count_to_equal",
        "expect_column_min_to_be_between",
        "expect_column_max_to_be_between",
        "expect_column_mean_to_be_between",
        "expect_column_median_to_be_between",
        "expect_column_sum_to_be_between",
        "expect_column_stdev_to_be_between",
        "expect_column_unique_value_count_to_be_between",
        "expect_column_proportion_of_unique_values_to_be_between",
        "expect_column_distinct_values_to_be_in_set",
        "expect_column_distinct_values_to_contain_set",
        "expect_column_distinct_values_to_equal_set",
        "expect_column_most_common_value_to_be_in_set",
    }
)
_MAX_EXPECTATIONS = 500

# The pandas dtype names Great Expectations observes for each catalog type (the validator
# converts Arrow to pandas' nullable dtypes, so an integer column with nulls stays Int64).
PANDAS_TYPES: dict[str, list[str]] = {
    "BIGINT": ["Int64Dtype"],
    "DOUBLE": ["Float64Dtype"],
    "BOOLEAN": ["BooleanDtype"],
    "VARCHAR": ["StringDtype"],
    "DATE": ["datetime64[ms]"],
    "TIMESTAMP": ["datetime64[us]"],
}

# Headroom around the observed range of a numeric column, as a share of that range.
RANGE_HEADROOM = 0.25


def kind_of(expectation_type: str) -> str:
    if expectation_type in ROW:
        return "row"
    if expectation_type in SCHEMA:
        return "schema"
    if expectation_type in WHOLE:
        return "whole"
    raise ValidationError(
        f"expectation {expectation_type[:100]!r} is not supported",
        details={"type": expectation_type[:100], "supported": sorted(ROW | SCHEMA | WHOLE)},
    )


def domain_key(expectation_type: str, kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """What Great Expectations keys an expectation on within a suite: its type and the columns
    it looks at (a second expectation with the same key replaces the first)."""
    columns = kwargs.get("column_list")
    return (
        expectation_type,
        kwargs.get("column"),
        kwargs.get("column_A"),
        kwargs.get("column_B"),
        tuple(columns) if isinstance(columns, list) else None,
    )


# Great Expectations hands a row_condition parsed "pandas" to DataFrame.query, which evaluates
# Python ("@pd.io.common.os.system(...)" ran a command); no kwarg may choose a parser.
_CODE_KWARGS = frozenset({"row_condition", "condition_parser"})


def check_kwargs(kwargs: Mapping[str, Any], index: int) -> None:
    """Refuse (422) the kwargs that make Great Expectations evaluate text as code."""
    code = sorted(_CODE_KWARGS & set(kwargs))
    if code:
        raise ValidationError(
            f"expectation {index}: {', '.join(code)} is not supported (Great Expectations "
            "evaluates row conditions as code)",
            details={"index": index, "kwargs": code},
        )


def check_suite(doc: Any) -> dict[str, Any]:
    """Validate a suite document with Great Expectations; return its normalised form."""
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    if not isinstance(doc, Mapping) or not isinstance(doc.get("expectations"), list):
        raise ValidationError('a suite is {"expectations": [{"type": ..., "kwargs": {...}}]}')
    items = doc["expectations"]
    if len(items) > _MAX_EXPECTATIONS:
        raise ValidationError(f"a suite holds at most {_MAX_EXPECTATIONS} expectations")
    out = []
    seen: set[tuple[Any, ...]] = set()
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or not isinstance(item.get("type"), str):
            raise ValidationError(f"expectation {i} needs a string 'type'", details={"index": i})
        kwargs = item.get("kwargs", {})
        meta = item.get("meta", {})
        if not isinstance(kwargs, Mapping) or not isinstance(meta, Mapping):
            raise ValidationError(
                f"expectation {i}: kwargs and meta are objects", details={"index": i}
            )
        kind_of(item["type"])
        check_kwargs(kwargs, i)
        try:
            ExpectationConfiguration(type=item["type"], kwargs=dict(kwargs)).to_domain_obj()
        except Exception as exc:  # GE raises pydantic and its own errors alike
            raise ValidationError(
                f"expectation {i} ({item['type']}) is invalid",
                details={"index": i, "reason": str(exc)[:500]},
            ) from exc
        key = domain_key(item["type"], kwargs)
        if key in seen:
            raise ValidationError(
                f"expectation {i} repeats {item['type']} on the same column(s); Great "
                "Expectations keeps one per column: merge them",
                details={"index": i},
            )
        seen.add(key)
        out.append({"type": item["type"], "kwargs": dict(kwargs), "meta": dict(meta)})
    return {"expectations": out}


def is_identifier(column: str) -> bool:
    low = column.lower()
    return low == "id" or low.endswith("_id") or low.endswith("_uuid") or low == "uuid"


def infer_suite(
    path: object,
    types: Mapping[str, str],
    subject_column: str,
    unique_columns: Sequence[str] = (),
) -> dict[str, Any]:
    """The default suite for a dataset, from the statistics of its first version.

    ``types``: column -> catalog type (VARCHAR, BIGINT, ...). ``unique_columns``: declared
    unique by the steward; identifier-named columns that are unique in this version are too.
    """
    columns = list(types)
    numeric = [c for c in columns if types[c] in ("BIGINT", "DOUBLE") and not is_identifier(c)]
    candidates = [c for c in columns if is_identifier(c) and c not in unique_columns]
    selects = ["count(*)"]
    for c in numeric:
        selects += [f'min("{c}")', f'max("{c}")']
    for c in candidates:
        selects += [f'count(DISTINCT "{c}")', f'count("{c}")']
    # Column names were validated by the catalog; the path comes from the catalog.
    con = duckdb.connect()
    try:
        sql = f"SELECT {', '.join(selects)} FROM {parquet_source(path)}"  # noqa: S608
        row = con.execute(sql).fetchone()
    finally:
        con.close()
    assert row is not None
    rows = int(row[0])
    stats = list(row[1:])
    ranges: dict[str, tuple[Any, Any]] = {}
    for c in numeric:
        ranges[c] = (stats.pop(0), stats.pop(0))
    unique = list(dict.fromkeys(unique_columns))
    for c in candidates:
        distinct, non_null = stats.pop(0), stats.pop(0)
        if c != subject_column and rows > 0 and distinct == non_null == rows:
            unique.append(c)

    def exp(kind: str, reason: str, **kwargs: Any) -> dict[str, Any]:
        return {"type": kind, "kwargs": kwargs, "meta": {"inferred": True, "reason": reason}}

    out = [
        exp(
            "expect_table_columns_to_match_set",
            "a new version keeps every column (new ones may be added)",
            column_set=columns,
            exact_match=False,
        ),
        exp("expect_table_row_count_to_be_between", "a version has rows", min_value=1),
        exp(
            "expect_column_values_to_not_be_null",
            "every row names its data subject",
            column=subject_column,
        ),
    ]
    for c in columns:
        out.append(
            exp(
                "expect_column_values_to_be_in_type_list",
                f"{c} keeps its type {types[c]}",
                column=c,
                type_list=PANDAS_TYPES[types[c]],
            )
        )
    for c in unique:
        if c != subject_column:
            out.append(
                exp("expect_column_values_to_not_be_null", f"{c} identifies a row", column=c)
            )
        out.append(exp("expect_column_values_to_be_unique", f"{c} identifies a row", column=c))
    for c, (lo, hi) in ranges.items():
        if lo is None or hi is None:
            continue
        bounds = _with_headroom(float(lo), float(hi), integer=types[c] == "BIGINT")
        out.append(
            exp(
                "expect_column_values_to_be_between",
                f"{c} stays near its observed range [{lo}, {hi}]",
                column=c,
                min_value=bounds[0],
                max_value=bounds[1],
            )
        )
    return check_suite({"expectations": out})


def _with_headroom(lo: float, hi: float, *, integer: bool) -> tuple[float, float]:
    pad = max((hi - lo) * RANGE_HEADROOM, abs(hi) * 0.01, 1.0 if integer else 1e-9)
    low = lo - pad
    # Values that were never negative stay non-negative (a negative age is a defect).
    if lo >= 0:
        low = max(0.0, low)
    high = hi + pad
    if integer:
        return float(math.floor(low)), float(math.ceil(high))
    return low, high


def types_of(schema: Any) -> dict[str, str]:
    """Catalog types of an Arrow schema's columns."""
    return {f.name: duckdb_type(f.type) for f in schema}
