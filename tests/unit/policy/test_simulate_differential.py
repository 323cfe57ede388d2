"""Simulate checked against an independent computation, over generated edits of the demo set.

For every principal, role, dataset and purpose the two sets name, the rows each set serves are
found by asking a real casbin.Enforcer about every row of the demo data, one row at a time, and
the column actions by reading the column rules directly (strictest matching action wins). The
report of ``simulate_policy`` must equal the difference: rows gained and lost, the counts before
and after, and the columns unmasked and masked; where it reports nothing, nothing may differ.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings

from govern.catalog import DatasetInfo
from govern.demo import load_demo
from govern.gateway import Gateway
from tests.unit.policy.reference import (
    Rule,
    casbin_rows,
    column_actions,
    demo_rules,
    edited_sets,
)


@dataclass(frozen=True)
class Expected:
    rows_before: frozenset[int]
    rows_after: frozenset[int]
    unmasked: list[str]
    masked: list[str]


@cache
def _rows(path: str) -> tuple[dict[str, Any], ...]:
    with duckdb.connect() as con:
        rel = con.sql(f"SELECT * FROM read_parquet('{path}')")
        return tuple(dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall())


def _served(
    model: str, rules: Sequence[Rule], subject: dict[str, Any], info: DatasetInfo, purpose: str
) -> frozenset[int]:
    return casbin_rows(
        model, rules, subject, info.name, _rows(str(info.path)), purpose, str(info.path)
    )


def _column_actions(
    rules: Sequence[Rule], subject: dict[str, Any], info: DatasetInfo, purpose: str
) -> dict[str, str]:
    return column_actions(
        rules, subject, info.name, {c.name: c.tags for c in info.columns}, purpose
    )


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
    # Each example builds whole reports; a failure is clear without shrinking it for minutes.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(new=edited_sets())
# Edits a dozen random draws may miss: every column dropped for everyone, every rule gone, and
# a wildcard allow that unmasks nothing.
@example(new=[*demo_rules(), ("p2", "True", "*", "*", "*", "drop")])
@example(new=[])
@example(new=[r for r in demo_rules() if r[0] == "p"])
@example(new=[*demo_rules(), ("p", "True", "*", "read", "*", "True", "allow")])
def test_simulate_reports_exactly_the_difference_of_the_served_rows_and_columns(
    demo_gateway: Gateway, new: list[Rule]
) -> None:
    old = demo_rules()
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
        *demo_rules(),
        ("p", "r.sub.role == 'trainer'", "chat_logs", "read", "evaluation", "True", "allow"),
    ]
    _, changes = demo_gateway.queries.simulate_policy(None, [list(r) for r in rules], None)
    assert {(c.principal, c.dataset, c.purpose) for c in changes} == {
        ("demo-trainer", "chat_logs", "evaluation")
    }
    assert re.fullmatch(r"\w+", changes[0].purpose)
