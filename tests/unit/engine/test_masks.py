from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from govern.engine.query import mask_expression


def run(expr: str, params: list[object], values: list[object], sql_type: str) -> list[object]:
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t (c {sql_type}, _row_id BIGINT)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [(v, i) for i, v in enumerate(values)])
    rows = con.execute(f"SELECT {expr} FROM t ORDER BY _row_id", params).fetchall()
    return [r[0] for r in rows]


def salted(params: list[object], salt: str) -> list[object]:
    return [salt if p == "__SALT__" else p for p in params]


def test_hash_is_salted_deterministic_and_keeps_null() -> None:
    expr, params = mask_expression("c", "VARCHAR", "hash")
    a = run(expr, salted(params, "s1"), ["x@y.org", "x@y.org", None], "VARCHAR")
    b = run(expr, salted(params, "s2"), ["x@y.org"], "VARCHAR")
    assert a[0] == a[1] and a[2] is None
    assert a[0] != b[0] and a[0] != "x@y.org" and len(str(a[0])) == 64


def test_truncate_generalize_and_redact() -> None:
    expr, p = mask_expression("c", "VARCHAR", "truncate")
    assert run(expr, p, ["abcdefg", None], "VARCHAR") == ["abcd", None]
    expr, p = mask_expression("c", "DATE", "generalize_date")
    assert run(expr, p, [dt.date(2024, 5, 17)], "DATE") == [dt.date(2024, 5, 1)]
    expr, p = mask_expression("c", "VARCHAR", "redact")
    assert run(expr, p, ["secret", None], "VARCHAR") == ["[REDACTED]", None]


def test_noise_is_bounded_and_deterministic_per_row() -> None:
    expr, params = mask_expression("c", "BIGINT", "noise")
    values = list(range(100, 200))
    first = run(expr, salted(params, "s"), values, "BIGINT")
    again = run(expr, salted(params, "s"), values, "BIGINT")
    assert first == again
    assert all(abs(int(n) - v) <= 2 for n, v in zip(first, values, strict=True))  # type: ignore[call-overload]
    assert first != values


@pytest.mark.parametrize(
    ("sql_type", "action", "value"),
    [("BIGINT", "truncate", 42), ("VARCHAR", "noise", "abc"), ("BOOLEAN", "generalize_date", True)],
)
def test_a_mask_that_does_not_fit_the_type_redacts(
    sql_type: str, action: str, value: object
) -> None:
    expr, params = mask_expression("c", sql_type, action)
    out = run(expr, salted(params, "s"), [value], sql_type)
    assert out[0] in (None, "[REDACTED]")
