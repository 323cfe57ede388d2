"""The compiler on fixed cases: each pins one pycasbin 1.43 behaviour (checked against the real
enforcer, never assumed) and shows the compiled filter agrees; plus what is refused and why."""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import casbin
import duckdb
import pytest

from govern.errors import PolicyCompileError, PolicyInvalid
from govern.plan import rowfilter as rf
from govern.policy.compiler import (
    DEFAULT_MODEL,
    build_enforcer,
    casbin_request,
    check_model,
    compile_row_filter,
    load_model,
)

ROOT = Path(__file__).resolve().parents[3]


def model_text(
    effect: str = "some(where (p.eft == allow)) && !some(where (p.eft == deny))",
    policy: str = "sub_rule, dataset, act, purpose, obj_rule, eft",
    matcher: str = (
        "eval(p.sub_rule) && keyMatch(r.obj.dataset, p.dataset) && r.act == p.act "
        '&& (p.purpose == "*" || r.purpose == p.purpose) && eval(p.obj_rule)'
    ),
    request: str = "sub, obj, act, purpose",
    extra: str = "",
) -> str:
    return (
        f"[request_definition]\nr = {request}\n\n[policy_definition]\np = {policy}\n\n"
        f"{extra}[policy_effect]\ne = {effect}\n\n[matchers]\nm = {matcher}\n"
    )


ALLOW_OVERRIDE = model_text(effect="some(where (p.eft == allow))")
DENY_OVERRIDE = model_text(effect="!some(where (p.eft == deny))")
ALLOW_AND_DENY = model_text()
PRIORITY = model_text(
    effect="priority(p.eft) || deny",
    policy="priority, sub_rule, dataset, act, purpose, obj_rule, eft",
)
SUBJECT = {"id": "u1", "role": "analyst", "level": 3, "region": "eu"}


def rule(
    obj_rule: str, eft: str = "allow", sub_rule: str = "True", dataset: str = "ds"
) -> list[str]:
    return ["p", sub_rule, dataset, "read", "*", obj_rule, eft]


def enforced(
    text: str, rules: Sequence[Sequence[str]], rows: Sequence[Mapping[str, Any]], **request: Any
) -> list[bool]:
    """What the real enforcer says per row (an exception counts as not allowed)."""
    enforcer = build_enforcer(text, rules)
    subject = request.get("subject", SUBJECT)
    out = []
    for row in rows:
        sub, obj = casbin_request(subject, request.get("dataset", "ds"), row)
        try:
            out.append(enforcer.enforce(sub, obj, "read", "training") is True)
        except Exception:
            out.append(False)
    return out


def compiled(
    text: str,
    rules: Sequence[Sequence[str]],
    rows: Sequence[Mapping[str, Any]],
    columns: Mapping[str, str],
    **request: Any,
) -> list[bool]:
    """What the compiled SQL selects per row, run in DuckDB (both SQL forms must agree)."""
    f = compile_row_filter(
        load_model(text),
        rules,
        subject=request.get("subject", SUBJECT),
        act="read",
        purpose="training",
        dataset=request.get("dataset", "ds"),
        columns=columns,
    )
    con = duckdb.connect()
    names = list(columns)
    con.execute(f"CREATE TABLE t ({', '.join(f'{n} {t}' for n, t in columns.items())})")
    con.executemany(
        f"INSERT INTO t VALUES ({', '.join('?' for _ in names)})",
        [[row[n] for n in names] for row in rows],
    )
    sql, params = rf.to_sql(f)
    picked = {r[0] for r in con.execute(f"SELECT rowid FROM t WHERE {sql}", params).fetchall()}
    readable = rf.to_readable_sql(f)
    assert {r[0] for r in con.execute(f"SELECT rowid FROM t WHERE {readable}").fetchall()} == picked
    return [i in picked for i in range(len(rows))]


def same(
    text: str,
    rules: Sequence[Sequence[str]],
    rows: Sequence[Mapping[str, Any]],
    columns: Mapping[str, str],
    **request: Any,
) -> list[bool]:
    expected = enforced(text, rules, rows, **request)
    assert compiled(text, rules, rows, columns, **request) == expected
    return expected


# --- models ------------------------------------------------------------------------------


def test_shipped_model_loads_with_column_rules() -> None:
    text = (ROOT / "policies" / "model.conf").read_text()
    model = load_model(text)
    assert model["p"]["p2"].tokens[2] == "p2_tag"
    enforcer = build_enforcer(text, [rule("True"), ["p2", "True", "ds", "pii", "*", "drop"]])
    sub, obj = casbin_request(SUBJECT, "ds", {})
    assert enforcer.enforce(sub, obj, "read", "training") is True
    assert load_model(DEFAULT_MODEL)["m"]["m"].value == model["m"]["m"].value


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        (model_text(request="sub, obj, act"), PolicyInvalid, "sub, obj, act, purpose"),
        (model_text(request="obj, sub, act, purpose"), PolicyInvalid, "request definition"),
        ("[request_definition]\nr = sub, obj, act, purpose\n", PolicyInvalid, "policy_definition"),
        (
            model_text(effect="subjectPriority(p.eft) || deny"),
            PolicyCompileError,
            "subjectPriority(p.eft) || deny",
        ),
        (model_text(effect="some(where (p.eft==allow))"), PolicyCompileError, "p.eft==allow"),
        (
            model_text(extra="[role_definition]\ng = _, _\n\n"),
            PolicyCompileError,
            "role definitions",
        ),
    ],
)
def test_models_outside_the_contract_are_refused(
    text: str, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=None) as caught:
        load_model(text)
    assert words in str(caught.value) + str(getattr(caught.value, "details", ""))


# --- check_model (upload-time 422s) --------------------------------------------------------


@pytest.mark.parametrize(
    "obj_rule",
    [
        "regexMatch(r.obj.s, '^a')",
        "keyMatch(r.obj.s, 'a*')",
        "r.obj.i + 1 > 2",
        "-r.obj.i < 0",
        "r.obj.s.upper() == 'A'",
        "r.obj.s[0] == 'a'",
        "'a' in r.obj.s",
        "r.obj == 1",
        "r.obj.i is 1",
        "[x for x in r.obj.s]",
    ],
)
def test_row_column_constructs_that_cannot_be_compiled_are_refused(obj_rule: str) -> None:
    with pytest.raises(PolicyCompileError):
        check_model(load_model(ALLOW_AND_DENY), [rule(obj_rule)])


@pytest.mark.parametrize("obj_rule", ["1", "'yes'", "None", "r.obj.b && 'x'", "()", "0 || 2"])
def test_non_boolean_matcher_results_are_refused(obj_rule: str) -> None:
    with pytest.raises(PolicyCompileError, match="not a boolean"):
        check_model(load_model(ALLOW_AND_DENY), [rule(obj_rule)])


@pytest.mark.parametrize(
    ("rules", "words"),
    [
        ([rule("true")], "'true' is not defined"),
        ([rule("r.obj.s ==")], "does not parse"),
        ([["p", "True", "ds"]], "fields"),
        ([["p", "True", "ds", "read", "*", "True", "allow", 3]], "strings"),
    ],
)
def test_broken_rules_are_invalid(rules: list[list[Any]], words: str) -> None:
    with pytest.raises(PolicyInvalid, match=words):
        check_model(load_model(ALLOW_AND_DENY), rules)


def test_mixed_priorities_cannot_be_ordered() -> None:
    # Casbin sorts digit strings as int and others as str: "10" and "-1" do not compare.
    rules = [["p", "10", "True", "ds", "read", "*", "True", "allow"]]
    rules.append(["p", "-1", "True", "ds", "read", "*", "True", "deny"])
    with pytest.raises(TypeError):
        build_enforcer(PRIORITY, rules)
    with pytest.raises(PolicyInvalid, match="priority"):
        check_model(load_model(PRIORITY), rules)


@pytest.mark.parametrize(
    "obj_rule",
    [
        "r.obj.s in ('a', 'b') && !(r.obj.i >= 3)",
        "r.obj.i is None || r.obj.b is True",
        "1 < r.obj.i <= r.sub.level",
        "(r.obj.s == 'a') if r.obj.b else (r.obj.i != 1)",
        "r.obj.dataset == 'ds' && keyMatch(r.obj.dataset, 'd*')",
        "1.5",
        "r.obj.d",
        "[r.sub.level for _ in (1,)][0] == 3",
    ],
)
def test_compilable_rules_pass_the_check(obj_rule: str) -> None:
    check_model(load_model(ALLOW_AND_DENY), [rule(obj_rule), ["p2", "x", "y", "z", "w", "v"]])


# --- pycasbin semantics, pinned against the real enforcer -----------------------------------

COLS = {"s": "VARCHAR", "i": "BIGINT", "d": "DOUBLE", "b": "BOOLEAN"}


def rows(*values: tuple[Any, Any, Any, Any]) -> list[dict[str, Any]]:
    return [dict(zip(COLS, v, strict=True)) for v in values]


def test_request_objects_are_namespaces_so_columns_named_like_dict_methods_work() -> None:
    sub, obj = casbin_request({"id": "u", "role": "r"}, "ds", {"items": 3})
    assert isinstance(sub, types.SimpleNamespace)
    assert obj.dataset == "ds"
    assert obj.items == 3
    text = ALLOW_OVERRIDE
    rules = [rule("r.obj.items == 3")]
    data = [{"items": 3}, {"items": 4}]
    assert same(text, rules, data, {"items": "BIGINT"}) == [True, False]
    # Evidence for the choice: with a dict, simpleeval's getattr finds dict.items first.
    enforcer = build_enforcer(text, rules)
    assert enforcer.enforce({"id": "u"}, {"dataset": "ds", "items": 3}, "read", "x") is False


def test_dataset_column_name_is_refused() -> None:
    with pytest.raises(PolicyCompileError):
        casbin_request({}, "ds", {"dataset": 1})
    with pytest.raises(PolicyCompileError):
        compiled(ALLOW_OVERRIDE, [rule("True")], [], {"dataset": "VARCHAR"})


def test_null_equality_is_false_but_ordering_raises() -> None:
    data = rows((None, None, None, None), ("a", 1, 1.0, True))
    assert same(ALLOW_OVERRIDE, [rule("r.obj.i != 5")], data, COLS) == [True, True]
    assert same(ALLOW_OVERRIDE, [rule("r.obj.i == None")], data, COLS) == [True, False]
    assert same(ALLOW_OVERRIDE, [rule("r.obj.i < 5")], data, COLS) == [False, True]
    # Under deny-override a deny rule that raises on NULL does not let the row through.
    assert same(DENY_OVERRIDE, [rule("r.obj.i > 5", "deny")], data, COLS) == [False, True]


def test_types_python_style() -> None:
    data = rows(("1", 1, 1.0, True), ("a", 0, 0.0, False))
    assert same(ALLOW_OVERRIDE, [rule("r.obj.b == 1")], data, COLS) == [True, False]
    assert same(ALLOW_OVERRIDE, [rule("r.obj.i == True")], data, COLS) == [True, False]
    assert same(ALLOW_OVERRIDE, [rule("r.obj.s == 1")], data, COLS) == [False, False]
    # str < int raises TypeError: not allowed, whatever else matches later.
    assert same(ALLOW_OVERRIDE, [rule("r.obj.s < 1"), rule("True")], data, COLS) == [False, False]
    # ... but not when an earlier allow already decided (enforce breaks out of its loop).
    assert same(ALLOW_OVERRIDE, [rule("True"), rule("r.obj.s < 1")], data, COLS) == [True, True]


def test_large_integers_and_doubles_compare_exactly() -> None:
    data = rows(("a", 2**53, float(2**53), True), ("a", 2**53 + 1, 2.0**53 + 2, True))
    # 9007199254740993.0 is the double 2**53: only the first row; DuckDB's BIGINT = DOUBLE
    # would round 2**53 + 1 and take both.
    assert same(ALLOW_OVERRIDE, [rule("r.obj.i == 9007199254740993.0")], data, COLS) == [
        True,
        False,
    ]
    assert same(ALLOW_OVERRIDE, [rule("r.obj.d < 9007199254740993")], data, COLS) == [
        True,
        False,
    ]
    assert same(ALLOW_OVERRIDE, [rule("r.obj.i < 2.5e30")], data, COLS) == [True, True]
    assert same(ALLOW_OVERRIDE, [rule("r.obj.i <= 2**64")], data, COLS) == [True, True]


def test_nan_compares_false_in_python_but_high_in_duckdb() -> None:
    data = rows(("a", 1, float("nan"), True), ("a", 1, 1.0, True))
    assert same(ALLOW_OVERRIDE, [rule("r.obj.d > 0")], data, COLS) == [False, True]
    assert same(ALLOW_OVERRIDE, [rule("r.obj.d != 0.5")], data, COLS) == [True, True]
    assert same(ALLOW_OVERRIDE, [rule("r.obj.d == r.obj.d")], data, COLS) == [False, True]
    # A NaN float result is "not zero", so it matches.
    assert same(ALLOW_OVERRIDE, [rule("r.obj.d")], data, COLS) == [True, True]


def test_matcher_result_types() -> None:
    data = rows(("a", 1, 0.0, None), ("a", 1, -0.0, True))
    assert same(ALLOW_OVERRIDE, [rule("0.0")], data, COLS) == [False, False]
    assert same(ALLOW_OVERRIDE, [rule("1.5")], data, COLS) == [True, True]
    assert same(ALLOW_OVERRIDE, [rule("r.obj.d")], data, COLS) == [False, False]
    # None is not a bool: RuntimeError. True is.
    assert same(ALLOW_OVERRIDE, [rule("r.obj.b")], data, COLS) == [False, True]
    # An int is refused by pycasbin 1.43 even though its message says "bool, int or float".
    assert enforced(ALLOW_OVERRIDE, [rule("1")], data) == [False, False]
    assert compiled(ALLOW_OVERRIDE, [rule("1")], data, COLS) == [False, False]
    with pytest.raises(PolicyCompileError, match="not a boolean"):
        compiled(ALLOW_OVERRIDE, [rule("r.obj.i")], data, COLS)


def test_lowercase_true_raises_in_casbin() -> None:
    data = rows(("a", 1, 1.0, True))
    assert same(ALLOW_OVERRIDE, [rule("true")], data, COLS) == [False]
    assert same(ALLOW_OVERRIDE, [rule("True")], data, COLS) == [True]
    assert same(ALLOW_OVERRIDE, [rule("1 == 1")], data, COLS) == [True]


def test_unknown_subject_attribute_raises_even_in_a_rule_for_another_dataset() -> None:
    data = rows(("a", 1, 1.0, True))
    other = rule("True", sub_rule="r.sub.clearance > 2", dataset="other")
    assert same(ALLOW_OVERRIDE, [other, rule("True")], data, COLS) == [False]
    assert same(ALLOW_OVERRIDE, [rule("True"), other], data, COLS) == [True]
    # Under allow-and-deny every rule is reached unless a deny matched first.
    assert same(ALLOW_AND_DENY, [rule("True"), other], data, COLS) == [False]


def test_missing_column_raises_when_reached() -> None:
    data = rows(("a", 1, 1.0, True))
    assert same(ALLOW_OVERRIDE, [rule("r.obj.nope == 1")], data, COLS) == [False]
    assert same(ALLOW_OVERRIDE, [rule("r.obj.i == 1 || r.obj.nope == 1")], data, COLS) == [True]


def test_priority_order_comes_from_casbins_sort() -> None:
    data = rows(("a", 1, 1.0, True), ("b", 1, 1.0, True))
    rules = [
        ["p", "10", "True", "ds", "read", "*", "True", "allow"],
        ["p", "2", "True", "ds", "read", "*", "r.obj.s == 'a'", "deny"],
    ]
    # "2" sorts before "10" as integers: the deny is seen first.
    assert same(PRIORITY, rules, data, COLS) == [False, True]
    assert build_enforcer(PRIORITY, rules).get_policy()[0][0] == "2"


def test_effects_without_eft_field_allow() -> None:
    text = model_text(
        effect="!some(where (p.eft == deny))", policy="sub_rule, dataset, act, purpose, obj_rule"
    )
    data = rows(("a", 1, 1.0, True), ("b", 1, 1.0, True))
    assert same(text, [["p", "True", "ds", "read", "*", "r.obj.s == 'a'"]], data, COLS) == [
        True,
        True,
    ]


def test_other_effect_values_are_indeterminate() -> None:
    data = rows(("a", 1, 1.0, True), ("b", 1, 1.0, True))
    rules = [rule("r.obj.s == 'a'", "maybe"), rule("r.obj.s == 'b'")]
    assert same(ALLOW_AND_DENY, rules, data, COLS) == [False, True]
    assert same(PRIORITY, [["p", "1", *r[1:]] for r in rules], data, COLS) == [False, True]


def test_no_policy_at_all() -> None:
    data = rows(("a", 1, 1.0, True))
    # With eval() in the matcher enforce raises; without, the matcher runs once with empty
    # policy fields, and deny-override allows whatever it says.
    assert same(DENY_OVERRIDE, [], data, COLS) == [False]
    plain = model_text(effect="!some(where (p.eft == deny))", matcher="r.obj.s == p.obj_rule")
    assert same(plain, [], data, COLS) == [True]
    plain_allow = model_text(effect="some(where (p.eft == allow))", matcher="r.obj.s == p.obj_rule")
    assert same(plain_allow, [], data, COLS) == [False]


def test_rule_of_the_wrong_size_raises_when_reached() -> None:
    data = rows(("a", 1, 1.0, True))
    short = ["p", "True", "ds", "read", "*", "True"]
    assert same(ALLOW_OVERRIDE, [rule("True"), short], data, COLS) == [True]
    assert same(ALLOW_OVERRIDE, [short, rule("True")], data, COLS) == [False]


def test_casbin_rewrites_operators_inside_string_literals() -> None:
    # enforce replaces && || ! textually, strings included: 'a!b' becomes 'anot b'.
    data = rows(("a!b", 1, 1.0, True), ("anot b", 1, 1.0, True), ("x and y", 1, 1.0, True))
    assert same(ALLOW_OVERRIDE, [rule("r.obj.s == 'a!b'")], data, COLS) == [False, True, False]
    assert same(ALLOW_OVERRIDE, [rule("r.obj.s == 'x && y'")], data, COLS) == [False, False, True]


def test_in_lists_follow_python_equality() -> None:
    data = rows(("a", 1, 1.0, True), (None, 2, -0.0, False), ("c", None, None, None))
    assert same(ALLOW_OVERRIDE, [rule("r.obj.i in (1.0, 'x', True)")], data, COLS) == [
        True,
        False,
        False,
    ]
    assert same(ALLOW_OVERRIDE, [rule("r.obj.s in [None, 'c']")], data, COLS) == [
        False,
        True,
        True,
    ]
    assert same(ALLOW_OVERRIDE, [rule("r.obj.d in {0.0}")], data, COLS) == [False, True, False]
    # 'in' over a string is a substring test: refused on a string column ...
    with pytest.raises(PolicyCompileError):
        compiled(ALLOW_OVERRIDE, [rule("r.obj.s in 'abc'")], data, COLS)
    # ... and a TypeError on any other.
    assert same(ALLOW_OVERRIDE, [rule("r.obj.i in 'abc'")], data, COLS) == [False, False, False]


def test_columns_of_different_numeric_types_are_refused() -> None:
    data = rows(("a", 1, 1.0, True))
    with pytest.raises(PolicyCompileError, match="cannot be compiled exactly"):
        compiled(ALLOW_OVERRIDE, [rule("r.obj.i == r.obj.d")], data, COLS)
    assert same(ALLOW_OVERRIDE, [rule("r.obj.s == r.obj.i")], data, COLS) == [False]
    with pytest.raises(PolicyCompileError):
        compiled(ALLOW_OVERRIDE, [rule("regexMatch(r.obj.s, 'a')")], data, COLS)


def test_unreferenced_columns_may_have_any_type_or_name() -> None:
    columns = {"s": "VARCHAR", "blob": "BLOB"}
    f = compile_row_filter(
        load_model(ALLOW_OVERRIDE),
        [rule("r.obj.s == 'a'")],
        subject=SUBJECT,
        act="read",
        purpose="training",
        dataset="ds",
        columns=columns,
    )
    assert rf.columns(f) == {"s"}
    with pytest.raises(PolicyCompileError, match="type"):
        compile_row_filter(
            load_model(ALLOW_OVERRIDE),
            [rule("r.obj.blob == 'a'")],
            subject=SUBJECT,
            act="read",
            purpose="training",
            dataset="ds",
            columns=columns,
        )


def test_subject_attributes_and_keymatch_are_folded_by_casbin() -> None:
    data = rows(("eu", 3, 1.0, True), ("us", 4, 1.0, True))
    rules = [rule("r.obj.s == r.sub.region && r.obj.i <= r.sub.level", dataset="d*")]
    assert same(ALLOW_OVERRIDE, rules, data, COLS) == [True, False]
    assert same(ALLOW_OVERRIDE, rules, data, COLS, dataset="dz") == [True, False]
    assert same(ALLOW_OVERRIDE, rules, data, COLS, dataset="x") == [False, False]
    f = compile_row_filter(
        load_model(ALLOW_OVERRIDE),
        rules,
        subject=SUBJECT,
        act="read",
        purpose="training",
        dataset="x",
        columns=COLS,
    )
    assert f == rf.FALSE


# --- hostile values never shape the SQL --------------------------------------------------------

HOSTILE = ["'; DROP TABLE t; --", "a'b\"c", "x\x00y", "\\", "?", "x" * 100_000, "\u202e"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_subject_attributes_become_parameters(value: str) -> None:
    rules = [rule("r.obj.s == r.sub.region || r.obj.s < r.sub.region")]

    def sql_for(region: str) -> tuple[str, list[object]]:
        f = compile_row_filter(
            load_model(ALLOW_OVERRIDE),
            rules,
            subject={**SUBJECT, "region": region},
            act="read",
            purpose="training",
            dataset="ds",
            columns=COLS,
        )
        return rf.to_sql(f)

    sql, params = sql_for(value)
    assert sql == sql_for("benign")[0]
    assert params == [value, value]
    data = rows((value, 1, 1.0, True), ("", 1, 1.0, True), ("zzz", 1, 1.0, True))
    assert same(ALLOW_OVERRIDE, rules, data, COLS, subject={**SUBJECT, "region": value}) == (
        enforced(ALLOW_OVERRIDE, rules, data, subject={**SUBJECT, "region": value})
    )


@pytest.mark.parametrize("value", [v for v in HOSTILE if len(v) < 1000])
def test_hostile_policy_values_become_parameters(value: str) -> None:
    literal = repr(value)
    rules = [rule(f"r.obj.s == {literal}"), rule(f"r.obj.s in ({literal}, 'b')", "deny")]
    f = compile_row_filter(
        load_model(ALLOW_AND_DENY),
        rules,
        subject=SUBJECT,
        act="read",
        purpose="training",
        dataset="ds",
        columns=COLS,
    )
    sql, params = rf.to_sql(f)
    assert value in params
    assert "DROP" not in sql
    assert "\x00" not in sql
    assert value not in sql or value == "?"
    data = rows((value, 1, 1.0, True), ("b", 1, 1.0, True))
    assert same(ALLOW_AND_DENY, rules, data, COLS) == [False, False]


def test_enforcer_from_build_enforcer_is_a_real_casbin_enforcer() -> None:
    enforcer = build_enforcer(ALLOW_OVERRIDE, [rule("True"), ["x", "ignored"]])
    assert isinstance(enforcer, casbin.Enforcer)
    assert enforcer.get_policy() == [rule("True")[1:]]
