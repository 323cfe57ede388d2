"""``govern policy test`` checked against an independent computation.

Over generated edits of the demo set, test files are written whose expectations come from
Casbin asked row by row and from the column rules read directly; some are then made wrong on
purpose (a row added or removed, a column action changed). ``run_file`` must pass exactly the
true ones, and for a wrong one name exactly the rows that are unexpected and missing and the
column that differs.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from govern.plan import COLUMN_ACTIONS
from govern.policy.loaded import LoadedPolicy
from govern.policy.testing import run_file
from govern.resources import policies_dir
from tests.unit.policy.reference import (
    PURPOSES,
    Rule,
    casbin_rows,
    column_actions,
    demo_rules,
    edited_sets,
)

DEMO_TESTS = policies_dir() / "tests" / "demo.yaml"
SUBJECTS = [
    {"id": "t1", "role": "trainer", "region": "eu"},
    {"id": "t2", "role": "trainer", "region": "us"},
    {"id": "a1", "role": "auditor"},
    {"id": "s1", "role": "steward", "region": "eu"},
    {"id": "c1", "role": "compliance"},
]


def _datasets() -> dict[str, Any]:
    spec = yaml.safe_load(DEMO_TESTS.read_text())
    return dict(spec["datasets"])


def _expected(
    model: str,
    rules: list[Rule],
    subject: dict[str, Any],
    name: str,
    spec: dict[str, Any],
    purpose: str,
) -> dict[str, Any]:
    tags = {c: list(spec.get("tags", {}).get(c, [])) for c in spec["columns"]}
    actions = column_actions(rules, subject, name, tags, purpose)
    rows = casbin_rows(model, rules, subject, name, spec["rows"], purpose, f"demo.yaml:{name}")
    # A Plan whose every column is dropped serves nothing (it is a deny).
    if all(a == "drop" for a in actions.values()):
        rows = frozenset()
    expect: dict[str, Any] = {"rows": sorted(rows)}
    if rows:
        expect["columns"] = actions
    return expect


@st.composite
def wrong(draw: st.DrawFn, expect: dict[str, Any], size: int) -> tuple[dict[str, Any], str]:
    """A copy of ``expect`` made wrong in one place, and what was changed."""
    out = {k: (dict(v) if isinstance(v, dict) else list(v)) for k, v in expect.items()}
    if "columns" in out and draw(st.booleans()):
        column = draw(st.sampled_from(sorted(out["columns"])))
        action = draw(st.sampled_from([a for a in COLUMN_ACTIONS if a != out["columns"][column]]))
        out["columns"][column] = action
        return out, f"column:{column}"
    index = draw(st.integers(0, size - 1))
    added = index not in out["rows"]
    out["rows"] = sorted(set(out["rows"]) ^ {index})
    # A row expected but not served is missing; one served but not expected is unexpected.
    return out, f"{'missing' if added else 'unexpected'}:{index}"


@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    # Each example builds whole reports; a failure is clear without shrinking it for minutes.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rules=edited_sets(), data=st.data())
@example(rules=demo_rules(), data=None)
def test_policy_test_passes_exactly_the_true_expectations_and_names_every_difference(
    tmp_path: Path, rules: list[Rule], data: st.DataObject | None
) -> None:
    model = (policies_dir() / "model.conf").read_text()
    datasets = _datasets()
    cases, wrongs = [], {}
    for subject in SUBJECTS:
        for name, spec in datasets.items():
            for purpose in [p for p in PURPOSES if p != "*"]:
                expect = _expected(model, rules, subject, name, spec, purpose)
                case_name = f"{subject['id']} {name} {purpose}"
                if data is not None and data.draw(st.integers(0, 3)) == 0:
                    expect, what = data.draw(wrong(expect, len(spec["rows"])))
                    wrongs[case_name] = what
                cases.append(
                    {
                        "name": case_name,
                        "subject": subject,
                        "dataset": name,
                        "purpose": purpose,
                        "expect": expect,
                    }
                )
    path = tmp_path / "generated.yaml"
    path.write_text(yaml.safe_dump({"datasets": datasets, "cases": cases}))
    policy = LoadedPolicy.build(model, [list(r) for r in rules], 0)

    results = {r.name: r for r in run_file(path, policy)}
    assert {n for n, r in results.items() if not r.ok} == set(wrongs)
    for name, what in wrongs.items():
        (failure,) = results[name].failures
        kind, _, which = what.partition(":")
        if kind == "column":
            assert failure.startswith(f"column {which}: expected "), failure
            continue
        found = re.search(r"unexpected (\[.*?\]), missing (\[.*?\])", failure)
        assert found, failure
        unexpected, missing = (ast.literal_eval(g) for g in found.groups())
        want = [int(which)]
        assert (unexpected, missing) == ((want, []) if kind == "unexpected" else ([], want)), (
            failure
        )
