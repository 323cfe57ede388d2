"""Uploaded policies that try to reach Python: every one is a 422 at upload (rules, model and
simulation alike), the set in force keeps serving, and nothing ran (a canary file that each
attack would write stays absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from govern.errors import PolicyInvalid
from govern.policy.loaded import LoadedPolicy
from govern.policy.service import default_model_text
from tests.security.scene import Scene, refusal

# {canary} is replaced by a path that would exist if any of them ran.
ESCAPES = [
    "__import__('os').system('touch {canary}')",
    "open('{canary}', 'w').write('x') > 0",
    "eval(\"__import__('os').system('touch {canary}')\")",
    'exec(\'open("{canary}", "w")\')',
    "getattr(r.sub, '__class__')",
    "r.sub.__class__.__mro__[1].__subclasses__()",
    "r.sub.__dict__",
    "keyMatch.__globals__['__builtins__']",
    "keyMatch.func_globals",
    "regexMatch.__code__",
    "r.sub.id.format(r.sub)",
    "'{{0.__class__}}'.format(r.sub)",
    "r.sub.id.format_map(r.sub.__dict__)",
    "[c for c in ().__class__.__base__.__subclasses__()]",
    "(lambda: __import__('os'))()",
    "(x := 1) == 1",
    "globals()",
    "vars(r.sub)",
    "type(r.sub)",
    "breakpoint()",
    "r.sub.role == 'trainer' and __builtins__",
    "r.sub.role == 'trainer'; import os",
    "r.sub.role == 'trainer' ||",
]


def _attacks(canary: Path) -> list[str]:
    return [a.replace("{canary}", str(canary)) for a in ESCAPES]


def _rules(scene: Scene) -> list[list[str]]:
    return [list(r) for r in scene.gateway.queries.policy().rules]


def _trainer_allowed(scene: Scene) -> bool:
    body = {
        "resource": {"dataset": "patient_notes"},
        "context": {"purpose": "training"},
    }
    response = scene.client.post("/v1/decisions", json=body, headers=scene.headers("trainer"))
    assert response.status_code == 200, response.text
    return bool(response.json()["decision"] == "allow")


def test_row_rules_that_reach_for_python_are_refused_at_upload(scene: Scene) -> None:
    canary = scene.root / "canary"
    base = _rules(scene)
    assert _trainer_allowed(scene)
    with scene.unchanged():
        for attack in _attacks(canary):
            # In the subject rule, the row rule, and both: each is inlined by eval().
            for rule in (
                ["p", attack, "patient_notes", "read", "training", "True", "allow"],
                ["p", "r.sub.role == 'trainer'", "*", "read", "*", attack, "allow"],
                ["p", attack, "*", "read", "*", attack, "deny"],
            ):
                response = scene.client.put(
                    "/v1/policies", json={"rules": [*base, rule]}, headers=scene.headers("steward")
                )
                body = refusal(response, 422)
                assert body["error"] in {"policy_invalid", "policy_not_compilable"}, (attack, body)
    assert not canary.exists()
    assert _trainer_allowed(scene)  # the set in force still serves


def test_column_rules_that_reach_for_python_are_refused_at_upload(scene: Scene) -> None:
    """Column rules (p2) inline their subject rule with eval() too; before this check they
    were stored unchecked and only failed (as a dropped column) when a decision met them."""
    canary = scene.root / "canary"
    base = _rules(scene)
    with scene.unchanged():
        for attack in _attacks(canary):
            rule = ["p2", attack, "*", "pii.*", "*", "pass"]
            response = scene.client.put(
                "/v1/policies", json={"rules": [*base, rule]}, headers=scene.headers("steward")
            )
            assert refusal(response, 422)["error"] == "policy_invalid", attack
    assert not canary.exists()


def test_a_model_whose_matcher_reaches_for_python_is_refused(scene: Scene) -> None:
    canary = scene.root / "canary"
    base = _rules(scene)
    model = default_model_text()
    with scene.unchanged():
        for attack in _attacks(canary):
            hostile = model.replace("m = eval(p.sub_rule)", f"m = ({attack}) && eval(p.sub_rule)")
            assert hostile != model
            for path, method in (("/v1/policies", "PUT"), ("/v1/policies/simulate", "POST")):
                response = scene.client.request(
                    method,
                    path,
                    json={"rules": base, "model": hostile},
                    headers=scene.headers("steward"),
                )
                body = refusal(response, 422)
                assert body["error"] in {"policy_invalid", "policy_not_compilable"}, (attack, body)
    assert not canary.exists()


def test_simulating_a_hostile_rule_set_is_refused(scene: Scene) -> None:
    canary = scene.root / "canary"
    base = _rules(scene)
    with scene.unchanged():
        for attack in _attacks(canary):
            rule = ["p", attack, "patient_notes", "read", "training", "True", "allow"]
            response = scene.client.post(
                "/v1/policies/simulate",
                json={"rules": [*base, rule]},
                headers=scene.headers("steward"),
            )
            refusal(response, 422)
    assert not canary.exists()


@pytest.mark.parametrize(
    "rule",
    [
        "r.sub.team.startswith('found')",
        "r.sub.clearance >= 2 and r.sub.region in ('eu', 'us')",
        "[t for t in ('eu',) if t == r.sub.region] == ['eu']",
    ],
)
def test_ordinary_expressions_still_load(rule: str) -> None:
    """The check refuses reach, not expressiveness: methods of values, comprehensions and
    containers over the subject still load."""
    rules = [
        ["p", rule, "patient_notes", "read", "training", "True", "allow"],
        ["p2", rule, "*", "pii.*", "*", "hash"],
    ]
    LoadedPolicy.build(default_model_text(), rules, None)


def test_the_sandbox_names_what_it_refused() -> None:
    rules = [["p", "r.sub.__class__ == 1", "patient_notes", "read", "training", "True", "allow"]]
    with pytest.raises(PolicyInvalid) as info:
        LoadedPolicy.build(default_model_text(), rules, None)
    assert info.value.details == {"attribute": "__class__"}
