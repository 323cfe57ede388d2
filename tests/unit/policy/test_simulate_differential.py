"""Simulate checked against an independent computation, over generated edits of the demo set.

For every principal, role, dataset and purpose the two sets name, the rows each set serves are
found by asking a real casbin.Enforcer about every row of the demo data, one row at a time, and
the column actions by reading the column rules directly (strictest matching action wins). The
report of ``simulate_policy`` must equal the difference: rows gained and lost, the counts before
and after, and the columns unmasked and masked; where it reports nothing, nothing may differ.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import casbin
import duckdb
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from govern.catalog import DatasetInfo
from govern.demo import load_demo
from govern.gateway import Gateway
from govern.plan import COLUMN_ACTIONS
from govern.policy.files import read_rules
from govern.resources import policies_dir

Rule = tuple[str, ...]

# Subject rules the column reference can evaluate by itself (and that raise for no principal).
SUB_RULES = {
    "r.sub.role == 'trainer'": lambda s: s["role"] == "trainer",
    "r.sub.role == 'auditor'": lambda s: s["role"] == "auditor",
    "r.sub.role in ('steward', 'auditor', 'compliance')": lambda s: (
        s["role"] in ("steward", "auditor", "compliance")
    ),
    "r.sub.role != 'admin'": lambda s: s["role"] != "admin",
    "True": lambda s: True,
}
ROW_RULES = {
    "patient_notes": [
        "r.obj.age < 18",
        "r.obj.age >= 40",
        "r.obj.consent_research == True",
        "r.obj.region == r.sub.region",
        "True",
    ],
    "chat_logs": ["r.obj.toxicity < 0.2", "r.obj.consent_training == True", "True"],
    "code_corpus": ["r.obj.stars > 10", "r.obj.licence == 'mit'", "True"],
    "*": ["True"],
}
PURPOSES = ["training", "audit", "evaluation", "*"]
TAGS = ["pii.email", "pii.id", "pii.date", "pii.quasi", "pii.freetext", "pii.*", "health", "*"]


def _demo_rules() -> list[Rule]:
    return [tuple(r) for r in read_rules(policies_dir() / "demo.csv")]


def _key_match(key: str, pattern: str) -> bool:
    # Casbin's keyMatch: a '*' matches any rest of the key.
    star = pattern.find("*")
    return key == pattern if star < 0 else key[:star] == pattern[:star]


# --- generated edits --------------------------------------------------------------------------


@st.composite
def edited_sets(draw: st.DrawFn) -> list[Rule]:
    out: list[Rule] = []
    for rule in _demo_rules():
        what = draw(st.sampled_from(["keep"] * 4 + ["drop", "change"]))
        if what == "drop":
            continue
        if what == "change":
            rule = draw(_changed(rule))
        out.append(rule)
    out.extend(draw(st.lists(_new_rule(), max_size=3)))
    return out


def _changed(rule: Rule) -> st.SearchStrategy[Rule]:
    if rule[0] == "p":
        _, sub, dataset, act, purpose, obj, eft = rule
        return st.one_of(
            st.just((*rule[:6], "deny" if eft == "allow" else "allow")),
            st.sampled_from(PURPOSES).map(lambda p: (rule[0], sub, dataset, act, p, obj, eft)),
            st.sampled_from(list(SUB_RULES)).map(
                lambda s: (rule[0], s, dataset, act, purpose, obj, eft)
            ),
        )
    _, sub, dataset, tag, purpose, action = rule
    return st.one_of(
        st.sampled_from(COLUMN_ACTIONS).map(lambda a: (*rule[:5], a)),
        st.sampled_from(TAGS).map(lambda t: (rule[0], sub, dataset, t, purpose, action)),
        st.sampled_from(PURPOSES).map(lambda p: (rule[0], sub, dataset, tag, p, action)),
        st.sampled_from(list(SUB_RULES)).map(lambda s: (rule[0], s, dataset, tag, purpose, action)),
    )


@st.composite
def _new_rule(draw: st.DrawFn) -> Rule:
    sub = draw(st.sampled_from(list(SUB_RULES)))
    purpose = draw(st.sampled_from(PURPOSES))
    dataset = draw(st.sampled_from(list(ROW_RULES)))
    if draw(st.booleans()):
        obj = draw(st.sampled_from(ROW_RULES[dataset]))
        return ("p", sub, dataset, "read", purpose, obj, draw(st.sampled_from(["allow", "deny"])))
    tag = draw(st.sampled_from(TAGS))
    return ("p2", sub, dataset, tag, purpose, draw(st.sampled_from(COLUMN_ACTIONS)))


# --- the independent computation --------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    rows_before: frozenset[int]
    rows_after: frozenset[int]
    unmasked: list[str]
    masked: list[str]


@cache
def _rows(path: str) -> tuple[tuple[str, ...], tuple[tuple[Any, ...], ...]]:
    with duckdb.connect() as con:
        rel = con.sql(f"SELECT * FROM read_parquet('{path}')")
        return tuple(rel.columns), tuple(rel.fetchall())


_SERVED: dict[tuple[Any, ...], frozenset[int]] = {}


def _served(
    model: str, rules: Sequence[Rule], subject: dict[str, Any], info: DatasetInfo, purpose: str
) -> frozenset[int]:
    """The rows a real enforcer allows, asked row by row. Only rules whose dataset and purpose
    fields can match take part (the matcher requires both), which lets an edit that leaves them
    alone reuse the answer."""
    relevant = tuple(
        sorted(
            r
            for r in rules
            if r[0] == "p" and _key_match(info.name, r[2]) and r[4] in ("*", purpose)
        )
    )
    if not relevant:
        return frozenset()
    key = (model, repr(sorted(subject.items())), str(info.path), purpose, relevant)
    if key in _SERVED:
        return _SERVED[key]
    enforcer = casbin.Enforcer(casbin.Enforcer.new_model(text=model))
    enforcer.logger.disabled = True
    for rule in relevant:
        enforcer.add_policy(*rule[1:])
    names, rows = _rows(str(info.path))
    sub = types.SimpleNamespace(**subject)
    out = set()
    for i, row in enumerate(rows):
        obj = types.SimpleNamespace(dataset=info.name, **dict(zip(names, row, strict=True)))
        try:
            if enforcer.enforce(sub, obj, "read", purpose) is True:
                out.add(i)
        except Exception:
            pass
    _SERVED[key] = frozenset(out)
    return _SERVED[key]


def _column_actions(
    rules: Sequence[Rule], subject: dict[str, Any], info: DatasetInfo, purpose: str
) -> dict[str, str]:
    out = {}
    for column in info.columns:
        action = "pass"
        for _, sub, dataset, tag, rule_purpose, rule_action in (r for r in rules if r[0] == "p2"):
            if (
                SUB_RULES[sub](subject)
                and _key_match(info.name, dataset)
                and any(_key_match(t, tag) for t in column.tags)
                and rule_purpose in ("*", purpose)
                and COLUMN_ACTIONS.index(rule_action) < COLUMN_ACTIONS.index(action)
            ):
                action = rule_action
        out[column.name] = action
    return out


def _purposes(*sets: Sequence[Rule]) -> set[str]:
    return {r[4] for rules in sets for r in rules if r[0] == "p" and r[4] != "*"}


def expected_changes(
    gateway: Gateway, old: Sequence[Rule], new: Sequence[Rule]
) -> Iterator[tuple[tuple[str, str, str, str], Expected]]:
    model = gateway.queries.policy().model_text
    for principal in gateway.queries.principals():
        for role in principal.roles:
            subject = {**principal.attributes, "id": principal.id, "role": role}
            for info in gateway.queries.datasets():
                for purpose in sorted(_purposes(old, new)):
                    cols_old = _column_actions(old, subject, info, purpose)
                    cols_new = _column_actions(new, subject, info, purpose)
                    yield (
                        (principal.id, role, info.name, purpose),
                        Expected(
                            rows_before=_served(model, old, subject, info, purpose),
                            rows_after=_served(model, new, subject, info, purpose),
                            unmasked=[c for c, a in cols_new.items() if a == "pass" != cols_old[c]],
                            masked=[c for c, a in cols_new.items() if a != "pass" == cols_old[c]],
                        ),
                    )


# --- the test ---------------------------------------------------------------------------------


@pytest.fixture
def demo_gateway(sqlite_gateway: Gateway) -> Gateway:
    load_demo(sqlite_gateway, scale=0.002)
    return sqlite_gateway


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(new=edited_sets())
# Edits a dozen random draws may miss: every column dropped for everyone, every rule gone, and
# a wildcard allow that unmasks nothing.
@example(new=[*_demo_rules(), ("p2", "True", "*", "*", "*", "drop")])
@example(new=[])
@example(new=[r for r in _demo_rules() if r[0] == "p"])
@example(new=[*_demo_rules(), ("p", "True", "*", "read", "*", "True", "allow")])
def test_simulate_reports_exactly_the_difference_of_the_served_rows_and_columns(
    demo_gateway: Gateway, new: list[Rule]
) -> None:
    old = _demo_rules()
    _, changes = demo_gateway.queries.simulate_policy(None, [list(r) for r in new], None)
    reported = {(c.principal, c.role, c.dataset, c.purpose): c for c in changes}
    keys = set()
    for key, want in expected_changes(demo_gateway, old, new):
        keys.add(key)
        gained = len(want.rows_after - want.rows_before)
        lost = len(want.rows_before - want.rows_after)
        change = reported.get(key)
        if change is None:
            assert (gained, lost) == (0, 0), key
            assert len(want.rows_before) == len(want.rows_after), key
            if want.rows_before and want.rows_after:
                assert (want.unmasked, want.masked) == ([], []), key
            continue
        got = (change.rows_before, change.rows_after, change.rows_gained, change.rows_lost)
        assert got == (len(want.rows_before), len(want.rows_after), gained, lost), key
        if want.rows_before:
            assert change.before == "allow", key
        if want.rows_after:
            assert change.after == "allow", key
        if want.rows_before and want.rows_after:
            assert change.columns_unmasked == want.unmasked, key
            assert change.columns_masked == want.masked, key
    # Nothing reported for a principal, dataset or purpose the two sets do not name.
    assert set(reported) <= keys


def test_the_purposes_simulated_are_those_the_row_rules_name(demo_gateway: Gateway) -> None:
    rules = [
        *_demo_rules(),
        ("p", "r.sub.role == 'trainer'", "chat_logs", "read", "evaluation", "True", "allow"),
    ]
    _, changes = demo_gateway.queries.simulate_policy(None, [list(r) for r in rules], None)
    assert {(c.principal, c.dataset, c.purpose) for c in changes} == {
        ("demo-trainer", "chat_logs", "evaluation")
    }
    assert re.fullmatch(r"\w+", changes[0].purpose)
