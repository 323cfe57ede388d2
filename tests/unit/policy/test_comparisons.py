"""Every comparison path of the compiler, enumerated: column kind x constant kind x operator x
side, and column kind x column kind x operator, each over rows holding NULL, NaN, +/-inf, -0.0,
zero, int64 and 2**53 extremes. The oracle is the real casbin.Enforcer, row by row.

The differential test samples whole policy sets; this one leaves no comparison to chance: a
one-line change in the numeric code (a ceil for a floor, a mirrored operator, a NaN guard
dropped) shows up here as a row where SQL and enforce disagree. The constant is a subject
attribute, so it can be of any type a principal's attributes may hold (dates, NaN, huge ints,
containers), not only what a literal in a rule can spell.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import duckdb
import pytest
from casbin.util import key_match

from govern.errors import PolicyCompileError
from govern.plan import rowfilter as rf
from govern.policy.compiler import build_enforcer, casbin_request, compile_row_filter, load_model

# One rule, one comparison: the filter is exactly that comparison's truth per row.
MODEL = """
[request_definition]
r = sub, obj, act, purpose

[policy_definition]
p = obj_rule

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = eval(p.obj_rule)
"""

KINDS = {
    "str": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}
# Two columns of each kind (the second one for column/column comparisons).
COLUMNS = {f"{kind}{n}": sql for kind, sql in KINDS.items() for n in (1, 2)}

BIG = 2**53 + 1  # the first integer a double cannot hold
# Row values per column kind: the special ones first. NULL is added to every column.
ROW_VALUES: dict[str, list[Any]] = {
    "str": ["", "a", "b", "é", "a'b", "A"],
    "int": [0, 1, -1, 2, 3, -3, BIG, -BIG, 2**63 - 1, -(2**63)],
    "float": [
        math.nan,
        math.inf,
        -math.inf,
        -0.0,
        0.0,
        0.5,
        2.5,
        -2.5,
        3.0,
        1.0,
        float(BIG),
        2.0**63,
        -(2.0**63),
    ],
    "bool": [True, False],
    "date": [dt.date(2020, 1, 1), dt.date(2020, 1, 2), dt.date(1999, 12, 31)],
    "timestamp": [
        dt.datetime(2020, 1, 1),
        dt.datetime(2020, 1, 1, 0, 0, 1),
        dt.datetime(1970, 1, 1),
    ],
}

# Constants by kind, as subject attributes: every kind against every column kind.
CONSTANTS: dict[str, list[Any]] = {
    "str": ["a", "", "b", "\ud800"],
    "int": [0, 1, 2, -3, 3, BIG, -BIG, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**400],
    "float": [
        0.0,
        -0.0,
        0.5,
        -0.5,
        2.5,
        -2.5,
        3.0,
        1.0,
        math.nan,
        math.inf,
        -math.inf,
        float(BIG),
        2.0**63,
        -(2.0**64),
        1e300,
    ],
    "bool": [True, False],
    "none": [None],
    "date": [dt.date(2020, 1, 1), dt.date(2020, 1, 2)],
    "timestamp": [dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 1, tzinfo=dt.UTC)],
    "container": [
        ["a", 0, 2.5, True, None, dt.date(2020, 1, 1), dt.datetime(1970, 1, 1)],
        (1, 3.0, BIG, "é", 2**63),
        {-0.0, "b", False},
        {"a": 1, 2: "x"},
        [],
        [math.nan],
        range(3),
        b"ab",
    ],
    # What a rule gets by naming one of Casbin's functions without calling it.
    "function": [key_match],
}
OPERATORS = ["==", "!=", "<", "<=", ">", ">=", "in", "not in", "is", "is not"]


def table_rows() -> list[dict[str, Any]]:
    """Rows in which every column meets each of its values and NULL, and every same-kind pair
    of columns meets every pair of values (the product, zipped across kinds)."""
    products = {
        kind: list(itertools.product([None, *values], repeat=2))
        for kind, values in ROW_VALUES.items()
    }
    height = max(len(p) for p in products.values())
    rows = []
    for index in range(height):
        row: dict[str, Any] = {}
        for kind, pairs in products.items():
            first, second = pairs[index % len(pairs)]
            row[f"{kind}1"], row[f"{kind}2"] = first, second
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def table() -> Iterator[tuple[duckdb.DuckDBPyConnection, list[tuple[int, dict[str, Any]]]]]:
    con = duckdb.connect()
    names = list(COLUMNS)
    con.execute(f"CREATE TABLE t ({', '.join(f'{n} {k}' for n, k in COLUMNS.items())})")
    con.executemany(
        f"INSERT INTO t VALUES ({', '.join('?' for _ in names)})",
        [[row[n] for n in names] for row in table_rows()],
    )
    # Read back: enforce sees the values the engine would hand it.
    fetched = con.execute(f"SELECT rowid, {', '.join(names)} FROM t").fetchall()
    yield con, [(r[0], dict(zip(names, r[1:], strict=True))) for r in fetched]
    con.close()


ORDERING = ("<", "<=", ">", ">=")
# The types of a constant the compiler pins Python's comparison semantics for.
PLAIN = (str, int, float, type(None), dt.date, tuple, list, dict, set, frozenset)


def utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


IDENTITY = {"is": "Is", "is not": "IsNot"}


def constant_refusal(kind: str, op: str, k: Any, column_left: bool) -> str | None:
    """The reason ``column <op> k`` (or ``k <op> column``) is refused, from docs/policies.md's
    list of what cannot be compiled exactly; None where it must compile."""
    if not isinstance(k, PLAIN) and not callable(k):
        return f"cannot compile a comparison with a {type(k).__name__} value"
    if kind == "bool":
        # A BOOLEAN value is True or False: Python's answer for each is the filter.
        return None
    if op in IDENTITY:
        if any(k is c for c in (None, True, False)):
            return None
        return f"cannot compile '{IDENTITY[op]}' on a row column exactly"
    if op in ("in", "not in"):
        if isinstance(k, str):
            return "substring tests on a row column are not supported" if kind == "str" else None
        holds_nan = isinstance(k, list | tuple | set | frozenset | dict) and any(
            isinstance(e, float) and math.isnan(e) for e in k
        )
        if column_left and holds_nan:
            return "'in' over a collection holding NaN is not supported"
        return None
    if op in ORDERING and kind == "str" and isinstance(k, str) and not utf8(k):
        return "ordering against a string that is not valid Unicode text"
    if op in ORDERING and kind == "float" and isinstance(k, int) and abs(k) > 2**1024:
        return "integer too large to compare with a DOUBLE column"
    return None


def column_refusal(left: str, right: str, op: str) -> str | None:
    """The reason ``left1 <op> right2`` (columns of those kinds) is refused, or None."""
    numeric = {"int", "float", "bool"}
    if left != right and {left, right} <= numeric:
        return (
            f"comparing {left} column '{left}1' with {right} column '{right}1' cannot be "
            "compiled exactly"
        )
    if op in IDENTITY:
        return f"cannot compile '{IDENTITY[op]}' between row columns"
    if op in ("in", "not in") and left == right == "str":
        return "substring tests between row columns are not supported"
    return None


class Checker:
    """Compiles rules, selects with all their filters in one query, and compares each row's
    verdict with enforce's (rows that differ only in columns a rule does not read are checked
    once)."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, rows: Sequence[tuple[int, Mapping[str, Any]]]
    ) -> None:
        self._con = con
        self._rows = rows
        self.cases: list[tuple[str, Mapping[str, Any], Sequence[str], rf.RowFilter]] = []
        self.refused = 0
        self.wrong_refusals: list[str] = []

    def add(
        self, rule: str, subject: Mapping[str, Any], reads: Sequence[str], refusal: str | None
    ) -> None:
        """Check ``rule`` later; ``refusal``: the reason it must be refused with, or None where
        it must compile (a refusal is a safe deny, but a wrong one is a bug)."""
        try:
            row_filter = compile_row_filter(
                load_model(MODEL),
                [["p", rule]],
                subject=subject,
                act="read",
                purpose="training",
                dataset="ds",
                columns=COLUMNS,
            )
        except PolicyCompileError as exc:
            self.refused += 1
            if str(exc) != refusal:
                self.wrong_refusals.append(f"{rule} with {subject!r}: refused ({exc})")
            return
        if refusal is not None:
            self.wrong_refusals.append(f"{rule} with {subject!r}: compiled, expected {refusal!r}")
        self.cases.append((rule, subject, reads, row_filter))

    def disagreements(self) -> list[str]:
        """Rows where SQL and enforce differ, and rules refused when they should not be."""
        parts, params = [], []
        for _, _, _, row_filter in self.cases:
            sql, values = rf.to_sql(row_filter)
            parts.append(sql)
            params += values
        # Each rendered filter is TRUE on the selected rows and FALSE (never NULL) elsewhere.
        query = f"SELECT rowid, {', '.join(parts)} FROM t"
        verdicts = {r[0]: r[1:] for r in self._con.execute(query, params).fetchall()}
        out = list(self.wrong_refusals)
        for index, (rule, subject, reads, _) in enumerate(self.cases):
            enforcer = build_enforcer(MODEL, [["p", rule]])
            seen: set[tuple[Any, ...]] = set()
            for rowid, row in self._rows:
                key = tuple((type(row[c]), repr(row[c])) for c in reads)
                if key in seen:
                    continue
                seen.add(key)
                sub, obj = casbin_request(subject, "ds", row)
                try:
                    expected = enforcer.enforce(sub, obj, "read", "training") is True
                except Exception:
                    expected = False
                got = verdicts[rowid][index]
                assert got is not None, f"{rule}: the SQL is NULL on a row"
                if got != expected:
                    shown = {c: row[c] for c in reads}
                    out.append(f"{rule} with {subject!r}: row {shown} enforce={expected}")
        return out


@pytest.mark.parametrize("column_kind", sorted(KINDS))
def test_column_against_every_constant_kind_matches_enforcer(
    table: tuple[duckdb.DuckDBPyConnection, list[tuple[int, dict[str, Any]]]], column_kind: str
) -> None:
    checker = Checker(*table)
    column = f"{column_kind}1"
    for constants in CONSTANTS.values():
        for k, op in itertools.product(constants, OPERATORS):
            for rule, column_left in (
                (f"r.obj.{column} {op} r.sub.k", True),
                (f"r.sub.k {op} r.obj.{column}", False),
            ):
                refusal = constant_refusal(column_kind, op, k, column_left)
                checker.add(rule, {"k": k}, [column], refusal)
    failures = checker.disagreements()
    assert not failures, "\n".join(failures[:20])
    # Refusals (a substring test, 'is' against a non-singleton, a huge int against a DOUBLE, a
    # string DuckDB cannot hold ...) stay the minority.
    assert checker.refused < len(checker.cases)


@pytest.mark.parametrize("left_kind", sorted(KINDS))
def test_column_against_every_column_kind_matches_enforcer(
    table: tuple[duckdb.DuckDBPyConnection, list[tuple[int, dict[str, Any]]]], left_kind: str
) -> None:
    checker = Checker(*table)
    for right_kind, op in itertools.product(sorted(KINDS), OPERATORS):
        left = f"{left_kind}1"
        right = f"{right_kind}2" if right_kind == left_kind else f"{right_kind}1"
        refusal = column_refusal(left_kind, right_kind, op)
        checker.add(f"r.obj.{left} {op} r.obj.{right}", {}, [left, right], refusal)
        if right_kind == left_kind:
            # The same column on both sides: NaN == NaN is False.
            checker.add(f"r.obj.{left} {op} r.obj.{left}", {}, [left], refusal)
    failures = checker.disagreements()
    assert not failures, "\n".join(failures[:20])


@pytest.mark.parametrize("column_kind", sorted(KINDS))
def test_column_truth_value_matches_enforcer(
    table: tuple[duckdb.DuckDBPyConnection, list[tuple[int, dict[str, Any]]]], column_kind: str
) -> None:
    """A bare column as an operand of not/and/or/if: Python's truth of NaN, -0.0, '' ..."""
    checker = Checker(*table)
    column = f"r.obj.{column_kind}1"
    rules = [
        f"!{column}",
        f"{column} && True",
        f"False || {column} == {column}",
        f"(True if {column} else False)",
        f"({column} if r.sub.k else False) == True",
        # A row-free condition that is false: only the else branch may count.
        f"({column} == {column} if not r.sub.k else True)",
        # Chains whose first link is row-free: true goes on to the column, false ends it.
        f"0 < r.sub.k != {column}",
        f"2 < r.sub.k != {column}",
        f"{column}",
    ]
    # A matcher that can hand back the column's own value is refused unless enforce accepts
    # that value as a result (bool, or float read as != 0).
    returns_value = (
        None
        if column_kind in ("bool", "float")
        else f"the matcher can return the value of {column_kind} column '{column_kind}1', which "
        "is not a boolean (Casbin raises on it); compare the column instead"
    )
    for rule in rules:
        refusal = returns_value if rule in (column, f"{column} && True") else None
        checker.add(rule, {"k": 1}, [f"{column_kind}1"], refusal)
    failures = checker.disagreements()
    assert not failures, "\n".join(failures[:20])


def test_an_in_list_holds_each_equal_value_once() -> None:
    """1, 1.0 and True are one value for an integer column: one SQL value, not three."""
    row_filter = compile_row_filter(
        load_model(MODEL),
        [["p", "r.obj.int1 in (1, 1.0, True, 2, 2)"]],
        subject={},
        act="read",
        purpose="training",
        dataset="ds",
        columns=COLUMNS,
    )
    assert row_filter == rf.InList(rf.Column("int1"), (1, 2))


def test_a_comparison_that_is_null_on_null_needs_no_null_guard() -> None:
    """``None < 5`` raises and SQL's ``NULL < 5`` is NULL: the comparison alone is exact, with
    no CASE around it for the NULL row (the SQL stays as small as the rule)."""
    row_filter = compile_row_filter(
        load_model(MODEL),
        [["p", "r.obj.int1 < 5 and r.obj.str1 >= 'a' and r.obj.float1 > 2.5"]],
        subject={},
        act="read",
        purpose="training",
        dataset="ds",
        columns=COLUMNS,
    )
    assert rf.to_readable_sql(row_filter) == (
        """((("int1" < 5) AND ("str1" >= 'a') AND ("float1" > CAST('2.5' AS DOUBLE)) """
        """AND (NOT isnan("float1"))) IS TRUE)"""
    )
