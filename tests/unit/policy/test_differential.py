"""The proof of invariant 3: the compiled row filter selects exactly the rows the real
casbin.Enforcer allows.

Hypothesis generates models (every supported effect, with and without priority, with and without
eval()), policy sets (subject conditions, column/constant, column/subject and column/column
comparisons, ``in`` lists, ``!``, ``||``, deny rules, rules for other datasets, actions and
purposes, rules that raise), subjects (with missing attributes and odd numbers) and rows (NULLs,
NaN, infinities, -0.0, extreme integers, odd strings) in a typed DuckDB table. For every row the
SQL filter's verdict must equal ``enforce(...) is True``, an exception counting as False.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from govern.errors import PolicyCompileError
from govern.plan import rowfilter as rf
from govern.policy.compiler import (
    build_enforcer,
    casbin_request,
    compile_row_filter,
    load_model,
)

COLUMNS = {
    "s": "VARCHAR",
    "t": "VARCHAR",
    "i": "BIGINT",
    "j": "INTEGER",
    "d": "DOUBLE",
    "b": "BOOLEAN",
    "day": "DATE",
    "ts": "TIMESTAMP",
}
SUBJECT_ATTRS = ("role", "level", "score", "flag", "region")
STATS: Counter[str] = Counter()
STARTED = time.monotonic()

EFFECTS = {
    "allow-override": "some(where (p.eft == allow))",
    "deny-override": "!some(where (p.eft == deny))",
    "allow-and-deny": "some(where (p.eft == allow)) && !some(where (p.eft == deny))",
    "priority": "priority(p.eft) || deny",
}


def eval_model(effect: str, priority: bool) -> str:
    fields = "sub_rule, dataset, act, purpose, obj_rule, eft"
    return f"""
[request_definition]
r = sub, obj, act, purpose

[policy_definition]
p = {"priority, " if priority else ""}{fields}
p2 = sub_rule, dataset, tag, purpose, action

[policy_effect]
e = {EFFECTS[effect]}

[matchers]
m = eval(p.sub_rule) && keyMatch(r.obj.dataset, p.dataset) && r.act == p.act \\
&& (p.purpose == "*" || r.purpose == p.purpose) && eval(p.obj_rule)
"""


# A matcher without eval(): row columns appear in the matcher itself, policy values are data.
PLAIN_MODEL = """
[request_definition]
r = sub, obj, act, purpose

[policy_definition]
p = sub_rule, dataset, act, purpose, obj_rule, eft

[policy_effect]
e = {effect}

[matchers]
m = (r.sub.role == p.sub_rule || p.sub_rule == "*") && r.obj.dataset == p.dataset \\
&& r.act == p.act && (r.obj.s == p.obj_rule || r.obj.i > r.sub.level || !r.obj.b)
"""

# --- values -------------------------------------------------------------------------------

INTS = st.one_of(
    st.integers(-5, 5),
    st.sampled_from([2**31 - 1, -(2**31), 2**53, 2**53 + 1, 2**63 - 1, -(2**63)]),
)
FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, 0.5, -2.5, 3.0, math.inf, -math.inf, math.nan, 2.0**53]),
    st.floats(-10, 10, allow_nan=False),
)
TEXT = st.one_of(
    st.sampled_from(["", "a", "b", "A", "é", "ü", "ab", "a'b", 'q"', "x\x00y", "\U0001f600", "DE"]),
    # Casbin rewrites these inside string literals too: r. -> r_, && -> and, ! -> not.
    st.sampled_from(["r.x", "r_x", "a&&b", "aandb", "a!b", "anot b", "p.y", "p_y"]),
    st.text(alphabet="ab'\\é!&|. ", max_size=4),
)
DATES = st.sampled_from([dt.date(2020, 1, 1), dt.date(1999, 12, 31), dt.date(2020, 1, 2)])
STAMPS = st.sampled_from(
    [dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 1, 12, 30, 5, 7), dt.datetime(1970, 1, 1)]
)


def sometimes_none(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """NULL about one time in five."""
    return st.sampled_from(range(5)).flatmap(lambda n: st.none() if n == 4 else strategy)


def usually(
    strategy: st.SearchStrategy[Any], other: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """``strategy`` about four times in five, else ``other``."""
    # sampled_from draws uniformly and shrinks towards the first, usual, choice.
    return st.sampled_from(range(5)).flatmap(lambda n: other if n == 4 else strategy)


ROW = st.fixed_dictionaries(
    {
        "s": sometimes_none(TEXT),
        "t": sometimes_none(TEXT),
        "i": sometimes_none(INTS),
        "j": sometimes_none(st.integers(-3, 3)),
        "d": sometimes_none(FLOATS),
        "b": sometimes_none(st.booleans()),
        "day": sometimes_none(DATES),
        "ts": sometimes_none(STAMPS),
    }
)

# Subject attribute values of every kind a comparison with a column can meet (r.sub.k): what a
# rule's literal cannot spell (dates, NaN, huge ints, non-UTF-8 text) included.
CONSTANT_VALUES = st.one_of(
    INTS,
    FLOATS,
    st.sampled_from([2**63, -(2**63) - 1, 10**400, 2.0**63, -(2.0**64), 1e300, -0.5, 2.5]),
    TEXT,
    st.sampled_from(["\ud800", True, False, None]),
    DATES,
    STAMPS,
    st.sampled_from([dt.datetime(2020, 1, 1, tzinfo=dt.UTC), dt.date(2020, 1, 1)]),
    st.lists(st.one_of(INTS, FLOATS.filter(lambda f: not math.isnan(f)), TEXT, DATES), max_size=3),
    st.sampled_from([(), {"a": 1}, frozenset({0, "b"}), range(2), [math.nan]]),
)

SUBJECT = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["u1", "u2"]),
        "k": CONSTANT_VALUES,
        "role": st.sampled_from(["analyst", "admin", "guest"]),
        "level": usually(st.integers(-3, 3), st.sampled_from([True, 2.5, 2**53 + 1])),
        "score": FLOATS,
        "flag": st.booleans(),
        "region": TEXT,
    }
).flatmap(
    # Now and then a principal lacks an attribute a rule reads: enforce raises.
    lambda sub: st.sets(st.sampled_from(["level", "score", "region", "k"]), max_size=1).map(
        lambda drop: {k: v for k, v in sub.items() if k not in drop}
    )
)

# --- policy expressions --------------------------------------------------------------------

ANY_CONSTANT = st.one_of(
    INTS.map(repr),
    st.sampled_from(["0.5", "-0.0", "2.0", "1e999", "-1e999", "9007199254740993.0", "1.5e300"]),
    TEXT.map(repr),
    st.sampled_from(["True", "False", "None"]),
)
TYPED_CONSTANT = {
    "s": TEXT.map(repr),
    "t": TEXT.map(repr),
    "i": st.one_of(INTS.map(repr), st.sampled_from(["2.5", "-0.5", "3.0", "1e999", "2**63"])),
    "j": st.one_of(st.integers(-3, 3).map(repr), st.sampled_from(["2.5", "True"])),
    "d": st.one_of(
        FLOATS.filter(lambda f: not math.isnan(f))
        .map(repr)
        .map(lambda r: {"inf": "1e999", "-inf": "-1e999"}.get(r, r)),
        st.sampled_from(["0", "1", "9007199254740993", "-9007199254740993", "True"]),
    ),
    "b": st.sampled_from(["True", "False", "1", "0", "1.0", "2"]),
    "day": st.sampled_from(["None", "'2020-01-01'", "0"]),
    "ts": st.sampled_from(["None", "'2020-01-01 00:00:00'"]),
}
TYPED_ATTR = {
    "s": ["region", "id"],
    "t": ["region"],
    "i": ["level", "score"],
    "j": ["level"],
    "d": ["score", "level"],
    "b": ["flag", "level"],
    "day": ["region"],
    "ts": ["level"],
}
COMPARE = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
# Every operator the compiler has a path for.
ANY_OPERATOR = st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in", "is", "is not"])
COLUMN = st.sampled_from(sorted(COLUMNS))
COLUMN_PAIRS = [("s", "t"), ("i", "j"), ("d", "d"), ("b", "b"), ("day", "day"), ("s", "i")]
COLUMN_PAIRS += [("ts", "ts"), ("day", "ts"), ("s", "s"), ("i", "i"), ("t", "d"), ("j", "j")]


def constant_for(draw: st.DrawFn, col: str) -> str:
    return draw(usually(TYPED_CONSTANT[col], ANY_CONSTANT))


@st.composite
def column_atom(draw: st.DrawFn) -> str:
    col = draw(COLUMN)
    kind = draw(st.integers(0, 19))
    op = draw(COMPARE)
    if kind <= 2:
        return f"r.obj.{col} {op} {constant_for(draw, col)}"
    if kind == 3:
        return f"{constant_for(draw, col)} {op} r.obj.{col}"
    if kind == 4:
        attr = draw(usually(st.sampled_from(TYPED_ATTR[col]), st.sampled_from(SUBJECT_ATTRS)))
        return f"r.obj.{col} {op} r.sub.{attr}"
    if kind == 5:
        a, b = draw(st.sampled_from(COLUMN_PAIRS))
        return f"r.obj.{a} {op} r.obj.{b}"
    if kind == 6:
        items = draw(st.lists(st.just(col).map(lambda c: constant_for(draw, c)), max_size=4))
        negated = draw(st.booleans())
        bracket = draw(st.sampled_from(["({},)", "[{}]", "{{{}}}"]))
        container = bracket.format(", ".join(items)) if items else "()"
        return f"r.obj.{col} {'not in' if negated else 'in'} {container}"
    if kind == 7:
        return f"r.obj.{col} {draw(st.sampled_from(['is', 'is not']))} None"
    if kind == 8:
        return f"r.obj.{col}"
    if kind == 9:
        low, high = constant_for(draw, col), constant_for(draw, col)
        return f"{low} {draw(COMPARE)} r.obj.{col} {op} {high}"
    if kind == 10:
        return f"r.obj.{col} in (r.sub.region, r.sub.level)"
    if kind == 11:
        return f"r.obj.b {draw(st.sampled_from(['is', 'is not']))} {draw(st.booleans())}"
    if kind == 12:
        return draw(st.sampled_from(["r.obj.nope == 1", "r.obj.dataset == 'ds'"]))
    if 14 <= kind <= 16:
        return f"r.obj.{col} {draw(ANY_OPERATOR)} r.sub.k"
    if kind >= 17:
        return f"r.sub.k {draw(ANY_OPERATOR)} r.obj.{col}"
    # Comparisons whose operands are themselves row-dependent: a comparison's bool, a
    # conditional value, or a value that raises, on either side.
    test = f"(r.obj.{col} {draw(COMPARE)} {constant_for(draw, col)})"
    other = draw(COLUMN)
    shape = draw(st.integers(0, 4))
    if shape == 0:
        rhs = draw(st.sampled_from(["True", "False", "1"]))
        return f"{test} {op} {rhs}" if draw(st.booleans()) else f"{rhs} {op} {test}"
    if shape == 1:
        return f"{test} {op} (r.obj.{other} {draw(COMPARE)} {constant_for(draw, other)})"
    if shape == 2:
        cond = f"(r.obj.{col} if {test} else {constant_for(draw, col)})"
        k = constant_for(draw, col)
        return f"{cond} {op} {k}" if draw(st.booleans()) else f"{k} {op} {cond}"
    if shape == 3:
        return f"r.sub.missing {op} r.obj.{col}"
    return f"r.obj.{col} {op} r.sub.missing"


SUBJECT_ATOM = st.sampled_from(
    [
        "True",
        "True",
        "1 == 1",
        "r.sub.role == 'analyst'",
        "r.sub.role != 'guest'",
        "r.sub.role in ('analyst', 'admin')",
        "r.sub.level >= 0",
        "r.sub.flag",
        "r.sub.score",
        "r.sub.region != 'DE'",
        "r.sub.level",
        "False",
        "0.0",
        "1.5",
        "1",
        "'yes'",
        "r.purpose == 'training'",
        'keyMatch(r.obj.dataset, "d*")',
        "r.sub.missing == 1",
    ]
)


def expression(atom: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.recursive(
        atom,
        lambda inner: st.one_of(
            inner.map(lambda e: f"!({e})"),
            st.tuples(inner, inner).map(lambda t: f"({t[0]} && {t[1]})"),
            st.tuples(inner, inner).map(lambda t: f"({t[0]} || {t[1]})"),
            st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        ),
        max_leaves=4,
    )


OBJ_RULE = expression(usually(column_atom(), SUBJECT_ATOM))
SUB_RULE = usually(
    st.sampled_from(["True", "r.sub.role != 'guest'", "r.sub.flag || !r.sub.flag"]),
    expression(SUBJECT_ATOM),
)


@st.composite
def eval_rule(draw: st.DrawFn, priority: bool) -> list[str]:
    rule = [
        "p",
        draw(SUB_RULE),
        draw(st.sampled_from(["ds", "ds", "ds", "other", "*", "d*"])),
        draw(st.sampled_from(["read", "read", "read", "write"])),
        draw(st.sampled_from(["*", "*", "training", "analytics"])),
        draw(OBJ_RULE),
        draw(usually(st.just("allow"), st.sampled_from(["deny", "deny", "maybe"]))),
    ]
    if priority:
        rule.insert(1, str(draw(st.integers(0, 12))))
    return rule


@st.composite
def plain_rule(draw: st.DrawFn) -> list[str]:
    return [
        "p",
        draw(st.sampled_from(["analyst", "admin", "*"])),
        draw(st.sampled_from(["ds", "other"])),
        draw(st.sampled_from(["read", "write"])),
        draw(st.sampled_from(["*", "training"])),
        draw(TEXT),
        draw(st.sampled_from(["allow", "deny"])),
    ]


REQUEST = st.fixed_dictionaries(
    {
        "act": usually(st.just("read"), st.just("write")),
        "purpose": usually(st.just("training"), st.just("analytics")),
        "dataset": usually(st.just("ds"), st.just("dz")),
        "subject": SUBJECT,
        "rows": st.lists(ROW, min_size=1, max_size=10),
    }
)

# --- the check -----------------------------------------------------------------------------

_DDL = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    yield connection
    connection.close()


def load_rows(
    con: duckdb.DuckDBPyConnection, rows: Sequence[Mapping[str, Any]]
) -> list[tuple[int, dict[str, Any]]]:
    """Store the rows and read them back: enforce sees what the engine would hand it."""
    con.execute(f"CREATE OR REPLACE TABLE t ({_DDL})")
    names = list(COLUMNS)
    con.executemany(
        f"INSERT INTO t VALUES ({', '.join('?' for _ in names)})",
        [[row[n] for n in names] for row in rows],
    )
    fetched = con.execute(f"SELECT rowid, {', '.join(names)} FROM t").fetchall()
    return [(r[0], dict(zip(names, r[1:], strict=True))) for r in fetched]


def selected(con: duckdb.DuckDBPyConnection, sql: str, params: list[object]) -> set[int]:
    return {r[0] for r in con.execute(f"SELECT rowid FROM t WHERE {sql}", params).fetchall()}


def allowed(
    enforcer: Any, subject: Mapping[str, Any], request: Mapping[str, Any], row: Any
) -> bool:
    sub, obj = casbin_request(subject, request["dataset"], row)
    try:
        return enforcer.enforce(sub, obj, request["act"], request["purpose"]) is True
    except Exception:
        STATS["rows where enforce raised"] += 1
        return False


def check(
    con: duckdb.DuckDBPyConnection,
    model_text: str,
    rules: list[list[str]],
    request: Mapping[str, Any],
) -> None:
    enforcer = build_enforcer(model_text, rules)
    subject = request["subject"]
    STATS["policy sets"] += 1
    try:
        row_filter = compile_row_filter(
            load_model(model_text),
            rules,
            subject=subject,
            act=request["act"],
            purpose=request["purpose"],
            dataset=request["dataset"],
            columns=COLUMNS,
        )
    except PolicyCompileError:
        STATS["refused"] += 1
        return
    if isinstance(row_filter, rf.Const):
        STATS[f"constant {row_filter.value} filters"] += 1
    else:
        STATS["row-dependent filters"] += 1
    rows = load_rows(con, request["rows"])
    sql, params = rf.to_sql(row_filter)
    got = selected(con, sql, params)
    assert selected(con, rf.to_readable_sql(row_filter), []) == got
    restored = rf.from_json(json.loads(json.dumps(rf.to_json(row_filter))))
    assert rf.to_readable_sql(restored) == rf.to_readable_sql(row_filter)
    for rowid, row in rows:
        expected = allowed(enforcer, subject, request, row)
        STATS["rows"] += 1
        STATS["allowed rows"] += expected
        assert (rowid in got) == expected, (
            f"row {row!r}: enforce says {expected}, SQL says {rowid in got}\n"
            f"rules={rules!r}\nrequest={request!r}\nsql={rf.to_readable_sql(row_filter)}"
        )


# The always-on count; a policy-* profile (conftest.py) sets its own.
ALWAYS_ON_EXAMPLES = 200
POLICY_PROFILE = settings.get_current_profile_name().startswith("policy-")
COMMON = settings(
    max_examples=settings.default.max_examples if POLICY_PROFILE else ALWAYS_ON_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@COMMON
@given(
    effect=st.sampled_from(sorted(EFFECTS)),
    rules=st.lists(eval_rule(priority=False), min_size=1, max_size=5),
    request=REQUEST,
)
def test_eval_model_matches_enforcer(
    con: duckdb.DuckDBPyConnection, effect: str, rules: list[list[str]], request: dict[str, Any]
) -> None:
    check(con, eval_model(effect, priority=False), rules, request)


@COMMON
@given(
    effect=st.sampled_from(sorted(EFFECTS)),
    rules=st.lists(eval_rule(priority=True), min_size=1, max_size=5),
    request=REQUEST,
)
def test_priority_field_matches_enforcer(
    con: duckdb.DuckDBPyConnection, effect: str, rules: list[list[str]], request: dict[str, Any]
) -> None:
    check(con, eval_model(effect, priority=True), rules, request)


@COMMON
@given(
    effect=st.sampled_from(sorted(EFFECTS)),
    rules=st.lists(plain_rule(), max_size=5),
    request=REQUEST,
)
def test_matcher_without_eval_matches_enforcer(
    con: duckdb.DuckDBPyConnection, effect: str, rules: list[list[str]], request: dict[str, Any]
) -> None:
    check(con, PLAIN_MODEL.format(effect=EFFECTS[effect]), rules, request)


# Only the rules' row conditions, under each effect: nearly every policy set compiles to a
# filter that reads the row, so each example exercises the comparison code (the models above
# often deny outright, on the dataset, action, purpose or subject).
ROW_ONLY_MODEL = """
[request_definition]
r = sub, obj, act, purpose

[policy_definition]
p = obj_rule, eft

[policy_effect]
e = {effect}

[matchers]
m = eval(p.obj_rule)
"""
ROW_ONLY = settings(COMMON, max_examples=settings.default.max_examples if POLICY_PROFILE else 100)


@ROW_ONLY
@given(
    effect=st.sampled_from(sorted(EFFECTS)),
    rules=st.lists(
        st.tuples(OBJ_RULE, usually(st.just("allow"), st.just("deny"))).map(lambda t: ["p", *t]),
        min_size=1,
        max_size=3,
    ),
    request=REQUEST,
)
def test_row_conditions_match_enforcer(
    con: duckdb.DuckDBPyConnection, effect: str, rules: list[list[str]], request: dict[str, Any]
) -> None:
    check(con, ROW_ONLY_MODEL.format(effect=EFFECTS[effect]), rules, request)


def test_report_counts(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last in this file: says how much was checked, and that refusals stayed rare."""
    elapsed = time.monotonic() - STARTED
    summary = ", ".join(f"{v} {k}" for k, v in sorted(STATS.items()))
    with capsys.disabled():
        print(f"\ndifferential ({elapsed:.1f}s): {summary}")
    if STATS["policy sets"]:
        assert STATS["rows"] > 0
        assert STATS["refused"] <= STATS["policy sets"] // 3
