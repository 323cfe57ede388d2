"""The row-filter AST: its SQL forms agree with its documented semantics and with each other,
values never become SQL text, and the JSON form round-trips."""

from __future__ import annotations

import datetime as dt
import json
import math
import struct
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from govern.errors import PolicyCompileError
from govern.plan import rowfilter as rf
from govern.plan.rowfilter import (
    FALSE,
    RAISES,
    TRUE,
    And,
    Column,
    Compare,
    Const,
    InList,
    IsNaN,
    IsNull,
    Not,
    Or,
    Value,
)

HOSTILE = [
    "'; DROP TABLE t; --",
    "a'b",
    "''",
    '"x"',
    "x\x00y",
    "\x00",
    "line\nbreak\r\t",
    "\x1b[31mred",
    "bidi\u202eevil",
    "\u2028sep",
    "?",
    "$1",
    "\\'",
    "é\U0001f600",
    "x" * 100_000,
]


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.execute("CREATE TABLE t (s VARCHAR, i BIGINT, d DOUBLE, b BOOLEAN)")
    yield connection
    connection.close()


# --- identifiers --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "_x", "Col_9", "select", "dataset"])
def test_plain_identifiers_are_quoted(name: str) -> None:
    assert rf.quote_identifier(name) == f'"{name}"'


@pytest.mark.parametrize(
    "name", ["", "1a", "a b", 'a"b', "a;b", "é", "a-b", "a\x00", "x\n", '"; DROP TABLE t; --']
)
def test_other_identifiers_are_refused(name: str) -> None:
    with pytest.raises(PolicyCompileError):
        rf.quote_identifier(name)
    with pytest.raises(PolicyCompileError):
        Column(name)


def test_bad_column_name_in_json_is_refused() -> None:
    with pytest.raises(PolicyCompileError):
        rf.from_json({"op": "is_null", "column": 'x" OR 1=1 --'})


# --- values -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_strings_are_bound_or_quoted(con: duckdb.DuckDBPyConnection, text: str) -> None:
    f = Compare("=", Column("s"), Value(text))
    sql, params = rf.to_sql(f)
    assert sql == '(("s" = ?) IS TRUE)'
    assert params == [text]
    literal = rf.sql_literal(text)
    # The literal is one SQL string expression: no raw control characters, quotes doubled.
    assert not any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 for ch in literal)
    assert "\u202e" not in literal
    assert "\u2028" not in literal
    assert con.execute(f"SELECT {literal} = ?, length({literal})", [text]).fetchone() == (
        True,
        len(text),
    )
    assert rf.to_readable_sql(f) == f'(("s" = {literal}) IS TRUE)'


@pytest.mark.parametrize(
    "value", [0.0, -0.0, 0.1, 1e-300, 5e-324, 1.7976931348623157e308, math.inf, -math.inf]
)
def test_float_literals_are_exact(con: duckdb.DuckDBPyConnection, value: float) -> None:
    row = con.execute(f"SELECT {rf.sql_literal(value)}, ?", [value]).fetchone()
    assert row is not None
    as_bits = [struct.pack("<d", v) for v in row]
    assert as_bits == [struct.pack("<d", value)] * 2


def test_nan_literal(con: duckdb.DuckDBPyConnection) -> None:
    row = con.execute(f"SELECT isnan({rf.sql_literal(math.nan)})").fetchone()
    assert row == (True,)


@pytest.mark.parametrize(
    "value",
    [0, -1, 2**63 - 1, -(2**63), True, False, dt.date(2020, 2, 29), dt.datetime(2020, 1, 1, 1, 2)],
)
def test_other_literals_match_parameters(con: duckdb.DuckDBPyConnection, value: Any) -> None:
    literal = rf.sql_literal(value)
    row = con.execute(f"SELECT {literal}, ?, typeof({literal}) = typeof(?)", [value, value])
    assert row.fetchone() == (value, value, True)


def test_datetime_with_microseconds(con: duckdb.DuckDBPyConnection) -> None:
    value = dt.datetime(1999, 12, 31, 23, 59, 59, 999_999)
    assert con.execute(f"SELECT {rf.sql_literal(value)}").fetchone() == (value,)


@pytest.mark.parametrize(
    "value",
    [None, b"x", [1], dt.datetime(2020, 1, 1, tzinfo=dt.UTC), object()],
)
def test_unsupported_values_are_refused(value: Any) -> None:
    with pytest.raises(PolicyCompileError):
        Value(value)


def test_lone_surrogates_are_refused() -> None:
    f = Compare("=", Column("s"), Value("\ud800"))
    with pytest.raises(PolicyCompileError):
        rf.to_sql(f)
    with pytest.raises(PolicyCompileError):
        rf.to_readable_sql(f)


def test_empty_in_list_is_refused() -> None:
    with pytest.raises(PolicyCompileError):
        InList(Column("s"), ())


def test_value_equality_keeps_types_apart() -> None:
    assert Value(1) != Value(True)
    assert Value(1) != Value(1.0)
    assert Value(0.0) != Value(-0.0)
    assert Value("a") == Value("a")


# --- semantics: a reference evaluator of the documented three-valued meaning ---------------

Row = dict[str, Any]


def reference(f: rf.RowFilter, row: Row) -> bool | None:
    """The module docstring's semantics, directly: None is NULL."""
    if isinstance(f, Const):
        return f.value
    if isinstance(f, IsNull):
        return row[f.column.name] is None
    if isinstance(f, IsNaN):
        value = row[f.column.name]
        return None if value is None else math.isnan(value)
    if isinstance(f, Compare):
        left = row[f.left.name]
        right = row[f.right.name] if isinstance(f.right, Column) else f.right.value
        return None if left is None or right is None else sql_compare(f.op, left, right)
    if isinstance(f, InList):
        value = row[f.column.name]
        return None if value is None else any(sql_compare("=", value, v) for v in f.values)
    if isinstance(f, Not):
        inner = reference(f.operand, row)
        return None if inner is None else not inner
    stop = isinstance(f, Or)
    for op in f.operands:
        value = reference(op, row)
        if value is None or value is stop:
            return value
    return not stop


def sql_compare(op: str, a: Any, b: Any) -> bool:
    # DuckDB orders NaN above every number and equal to itself.
    def key(x: Any) -> tuple[int, Any]:
        return (1, 0.0) if isinstance(x, float) and math.isnan(x) else (0, x)

    ka, kb = key(a), key(b)
    return {
        "=": ka == kb,
        "<>": ka != kb,
        "<": ka < kb,
        "<=": ka <= kb,
        ">": ka > kb,
        ">=": ka >= kb,
    }[op]


ROWS: list[Row] = [
    {"s": s, "i": i, "d": d, "b": b}
    for s, i, d, b in [
        (None, None, None, None),
        ("a", 1, 1.0, True),
        ("b", -1, math.nan, False),
        ("", 0, -0.0, None),
        ("a", None, math.inf, True),
        (None, 2, 0.5, False),
        ("x'y", 1, None, True),
    ]
]

COLS = {
    "s": st.sampled_from(["a", "b", "", "x'y"]),
    "i": st.integers(-1, 2),
    "d": st.sampled_from([1.0, 0.5, -0.0, math.inf, 0.0]),
    "b": st.booleans(),
}


@st.composite
def leaf(draw: st.DrawFn) -> rf.RowFilter:
    col = draw(st.sampled_from(sorted(COLS)))
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return Const(draw(st.sampled_from([True, False, None])))
    if kind == 1:
        return IsNull(Column(col))
    if kind == 2 and col == "d":
        return IsNaN(Column(col))
    if kind == 3:
        values = draw(st.lists(COLS[col], min_size=1, max_size=3))
        return InList(Column(col), tuple(values))
    if kind == 4:
        return Compare(draw(st.sampled_from(sorted(rf.COMPARE_OPS))), Column(col), Column(col))
    op = draw(st.sampled_from(sorted(rf.COMPARE_OPS)))
    return Compare(op, Column(col), Value(draw(COLS[col])))  # type: ignore[arg-type]


FILTERS = st.recursive(
    leaf(),
    lambda inner: st.one_of(
        inner.map(Not),
        st.lists(inner, min_size=1, max_size=5).map(lambda ops: And(tuple(ops))),
        st.lists(inner, min_size=1, max_size=5).map(lambda ops: Or(tuple(ops))),
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def rows_con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.execute("CREATE TABLE r (s VARCHAR, i BIGINT, d DOUBLE, b BOOLEAN)")
    connection.executemany(
        "INSERT INTO r VALUES (?, ?, ?, ?)", [[row[c] for c in "sidb"] for row in ROWS]
    )
    yield connection
    connection.close()


def selected(con: duckdb.DuckDBPyConnection, sql: str, params: list[object]) -> set[int]:
    return {r[0] for r in con.execute(f"SELECT rowid FROM r WHERE {sql}", params).fetchall()}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(f=FILTERS)
def test_sql_forms_follow_the_semantics(
    rows_con: duckdb.DuckDBPyConnection, f: rf.RowFilter
) -> None:
    expected = {i for i, row in enumerate(ROWS) if reference(f, row) is True}
    sql, params = rf.to_sql(f)
    assert sql.count("?") == len(params)
    assert selected(rows_con, sql, params) == expected
    assert selected(rows_con, rf.to_readable_sql(f), []) == expected
    # Two-valued: never NULL, so NOT (sql) is the complement.
    complement = selected(rows_con, f"NOT ({sql})", params)
    assert complement == set(range(len(ROWS))) - expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(f=FILTERS)
def test_simplify_and_constructors_keep_three_valued_meaning(f: rf.RowFilter) -> None:
    simple = rf.simplify(f)
    for row in ROWS:
        assert reference(simple, row) == reference(f, row)
    if isinstance(f, And | Or):
        build = rf.and_ if isinstance(f, And) else rf.or_
        rebuilt = build(*f.operands)
        for row in ROWS:
            assert reference(rebuilt, row) == reference(f, row)
    if isinstance(f, Or) and len(f.operands) >= 2:
        cond, then, orelse = f.operands[0], f.operands[1], f.operands[-1]
        branch = rf.if_then_else(cond, then, orelse)
        for row in ROWS:
            c = reference(cond, row)
            want = None if c is None else reference(then if c else orelse, row)
            assert reference(branch, row) == want


@settings(max_examples=300, deadline=None)
@given(f=FILTERS)
def test_json_round_trip(f: rf.RowFilter) -> None:
    data = rf.to_json(f)
    text = json.dumps(data)
    assert rf.from_json(json.loads(text)) == f
    assert rf.from_json(text) == f
    assert rf.to_sql(rf.from_json(text)) == rf.to_sql(f)


def test_json_keeps_value_types() -> None:
    for value in [1, True, 1.0, -0.0, math.inf, "1", dt.date(2020, 1, 1), dt.datetime(2020, 1, 1)]:
        f = Compare("=", Column("x"), Value(value))
        back = rf.from_json(json.loads(json.dumps(rf.to_json(f))))
        assert isinstance(back, Compare)
        assert isinstance(back.right, Value)
        assert type(back.right.value) is type(value)
        assert repr(back.right.value) == repr(value)


@pytest.mark.parametrize(
    "data",
    [
        {"op": "drop"},
        {"op": "const", "value": 1},
        {"op": "compare", "cmp": "LIKE", "column": "x", "right": {"column": "y"}},
        {
            "op": "compare",
            "cmp": "=",
            "column": "x",
            "right": {"value": {"type": "int", "value": True}},
        },
        {
            "op": "compare",
            "cmp": "=",
            "column": "x",
            "right": {"value": {"type": "sql", "value": "1"}},
        },
        {"op": "in", "column": "x", "values": []},
        {"op": "and", "operands": "x"},
        {"op": "not", "operand": 3},
        [],
    ],
)
def test_from_json_refuses_malformed_trees(data: Any) -> None:
    with pytest.raises(PolicyCompileError):
        rf.from_json(data)


# --- helpers ------------------------------------------------------------------------------


def test_columns_lists_every_column_read() -> None:
    f = And(
        (
            Compare("<", Column("a"), Column("b")),
            Or((IsNull(Column("c")), Not(IsNaN(Column("d"))))),
            InList(Column("e"), ("x", "y")),
            TRUE,
        )
    )
    assert rf.columns(f) == {"a", "b", "c", "d", "e"}


def test_constants() -> None:
    assert rf.is_true(TRUE)
    assert not rf.is_true(IsNull(Column("a")))
    assert rf.is_false(FALSE)
    assert rf.is_false(RAISES)
    assert not rf.is_false(TRUE)
    assert rf.to_sql(TRUE) == ("TRUE", [])
    assert rf.to_sql(RAISES) == ("(CAST(NULL AS BOOLEAN) IS TRUE)", [])


def test_short_circuit_is_not_sql_and() -> None:
    # Python: a raising left operand ends the evaluation, so NULL AND FALSE is NULL, not FALSE.
    assert rf.and_(RAISES, FALSE) == RAISES
    assert rf.or_(RAISES, TRUE) == RAISES
    nullable = Compare("=", Column("i"), Value(1))
    assert rf.and_(nullable, FALSE) == And((nullable, FALSE))
    assert rf.and_(IsNull(Column("i")), FALSE) == FALSE
    assert rf.not_(rf.not_(nullable)) == nullable


def test_parameter_order_follows_placeholders(con: duckdb.DuckDBPyConnection) -> None:
    # A nullable operand is written twice in the flat CASE; values bind in writing order.
    f = Or((Compare(">", Column("i"), Value(5)), Compare("=", Column("s"), Value("x"))))
    sql, params = rf.to_sql(f)
    assert params == [5, 5, "x"]
    assert sql.count("?") == 3
    assert sql.rindex("?") > sql.index('"s"')


def test_long_junctions_render_flat(rows_con: duckdb.DuckDBPyConnection) -> None:
    # Thousands of nullable operands must not nest (Python recursion, DuckDB expression depth).
    ors = Or(tuple(Compare("=", Column("i"), Value(k)) for k in range(3000)))
    ands = And(tuple(Not(Compare("=", Column("i"), Value(k))) for k in range(3, 3000)))
    for f, expected in ((ors, {1, 3, 5, 6}), (ands, {1, 2, 3, 5, 6})):
        sql, params = rf.to_sql(f)
        assert selected(rows_con, sql, params) == expected
        assert {i for i, row in enumerate(ROWS) if reference(f, row)} == expected
