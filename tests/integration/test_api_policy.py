"""Decisions and policy administration over REST, on the demo data, over both stores."""

from __future__ import annotations

import duckdb
import pytest
from fastapi.testclient import TestClient

from govern.demo import load_demo
from govern.engine import Engine
from govern.gateway import DecisionRequest, Gateway
from govern.policy.compiler import casbin_request
from govern.policy.service import default_model_text
from tests.conftest import TEST_ACTOR, auth


@pytest.fixture
def demo(gateway: Gateway) -> Gateway:
    load_demo(gateway, scale=0.02)
    return gateway


@pytest.fixture
def trainer(demo: Gateway) -> dict[str, str]:
    return auth(demo.commands.issue_token("demo-trainer", "trainer", TEST_ACTOR).token)


@pytest.fixture
def steward(demo: Gateway) -> dict[str, str]:
    return auth(demo.commands.issue_token("demo-steward", "steward", TEST_ACTOR).token)


def ask(dataset: str, purpose: str = "training", **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "action": "read",
        "resource": {"dataset": dataset},
        "context": {"purpose": purpose},
    }
    body.update(extra)
    return body


def test_the_demo_trainer_gets_a_row_filter_and_masks(
    client: TestClient, trainer: dict[str, str]
) -> None:
    r = client.post("/v1/decisions", json=ask("patient_notes"), headers=trainer)
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["decision"] == "allow"
    assert "consent_research" in plan["row_filter"] and "'eu'" in plan["row_filter"]
    assert plan["columns"]["patient_id"] == "hash"
    assert plan["columns"]["age"] == "noise"
    assert plan["policy_version"] == 1
    assert set(plan) >= {"obligations", "reasons", "log_index"}
    for dataset in ("chat_logs", "code_corpus"):
        r = client.post("/v1/decisions", json=ask(dataset), headers=trainer)
        assert r.json()["decision"] == "allow", r.json()


def test_the_plan_serves_exactly_the_rows_casbin_allows(demo: Gateway) -> None:
    token = demo.commands.issue_token("demo-trainer", "trainer", TEST_ACTOR).token
    caller = demo.decider.authenticate(token)
    plan = demo.decider.decide(caller, DecisionRequest(dataset="patient_notes", purpose="training"))
    info = demo.queries.dataset("patient_notes")
    engine = Engine()
    try:
        served = set(engine.table(info, plan).column("_row_id").to_pylist())
    finally:
        engine.close()
    enforcer = demo.queries.policy().enforcer()
    subject = {**caller.principal.attributes, "id": caller.id, "role": "trainer"}
    rows = duckdb.sql(f"SELECT * FROM read_parquet('{info.path}')").fetchall()
    names = [c.name for c in info.columns] + ["_row_id"]
    allowed = set()
    for values in rows:
        row = dict(zip(names, values, strict=True))
        sub, obj = casbin_request(subject, "patient_notes", row)
        try:
            ok = enforcer.enforce(sub, obj, "read", "training")
        except Exception:
            ok = False
        if ok:
            allowed.add(row["_row_id"])
    assert served == allowed
    assert 0 < len(served) < info.row_count


def test_subjects_cannot_raise_their_own_attributes(
    client: TestClient, trainer: dict[str, str]
) -> None:
    body = ask("patient_notes", subject={"id": "demo-trainer", "attributes": {"region": "us"}})
    plan = client.post("/v1/decisions", json=body, headers=trainer).json()
    assert "'eu'" in plan["row_filter"] and "'us'" not in plan["row_filter"]
    assert any("ignored" in r for r in plan["reasons"])


def test_trainers_may_only_ask_about_themselves(
    client: TestClient, trainer: dict[str, str], steward: dict[str, str]
) -> None:
    body = ask("patient_notes", subject={"id": "demo-steward"})
    r = client.post("/v1/decisions", json=body, headers=trainer)
    assert r.status_code == 403
    body = ask("patient_notes", subject={"id": "demo-trainer"})
    r = client.post("/v1/decisions", json=body, headers=steward)
    assert r.json()["decision"] == "allow"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (ask("no_such_dataset"), "no dataset"),
        (ask("patient_notes", purpose="marketing"), "no rule"),
        (ask("x'; DROP TABLE datasets; --"), "dataset names"),
        (ask("patient_notes", subject={"id": "nobody"}), "unknown subject"),
        (
            {**ask("patient_notes"), "resource": {"dataset": "patient_notes", "columns": ["nope"]}},
            "unknown column",
        ),
    ],
)
def test_unknown_or_hostile_requests_are_denied_with_a_reason(
    client: TestClient, steward: dict[str, str], body: dict[str, object], reason: str
) -> None:
    r = client.post("/v1/decisions", json=body, headers=steward)
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["decision"] == "deny"
    assert plan["row_filter"] is None and plan["columns"] == {}
    assert any(reason in x for x in plan["reasons"]), plan["reasons"]


def test_oversized_and_nul_values_never_500(client: TestClient, trainer: dict[str, str]) -> None:
    r = client.post("/v1/decisions", json=ask("a" * 100_000), headers=trainer)
    assert r.status_code == 422 and r.json()["error"] == "invalid"
    r = client.post(
        "/v1/decisions", json=ask("patient_notes", purpose="tr\x00aining"), headers=trainer
    )
    assert r.status_code == 200 and r.json()["decision"] == "deny"


def test_batch_decisions_return_one_plan_each(client: TestClient, trainer: dict[str, str]) -> None:
    body = {"requests": [ask("patient_notes"), ask("chat_logs"), ask("nope")]}
    r = client.post("/v1/decisions/batch", json=body, headers=trainer)
    assert [p["decision"] for p in r.json()["plans"]] == ["allow", "allow", "deny"]


def test_an_invalid_policy_set_is_422_and_the_old_one_keeps_serving(
    client: TestClient, steward: dict[str, str], trainer: dict[str, str]
) -> None:
    before = client.get("/v1/policies", headers=steward).json()
    assert before["version"] == 1
    for bad in (
        {"rules": [["p", "only", "three"]]},
        {"rules": [["q", "x"]]},
        {"rules": [], "model": "[request_definition]\nr = sub, obj, act\n"},
        {"rules": [["p2", "True", "*", "pii.*", "*", "shred"]]},
    ):
        r = client.put("/v1/policies", json=bad, headers=steward)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"] in {"policy_invalid", "policy_not_compilable"}
    assert client.get("/v1/policies", headers=steward).json()["version"] == 1
    plan = client.post("/v1/decisions", json=ask("patient_notes"), headers=trainer).json()
    assert plan["decision"] == "allow" and plan["policy_version"] == 1
    r = client.put("/v1/policies", json={"rules": before["rules"]}, headers=trainer)
    assert r.status_code == 403


def test_a_new_set_swaps_in_and_an_empty_set_denies_everything(
    client: TestClient, steward: dict[str, str], trainer: dict[str, str]
) -> None:
    r = client.put("/v1/policies", json={"rules": []}, headers=steward)
    assert r.json() == {"version": 2}
    plan = client.post("/v1/decisions", json=ask("patient_notes"), headers=trainer).json()
    assert plan["decision"] == "deny" and plan["policy_version"] == 2
    rules = [["p", "r.sub.role == 'trainer'", "*", "read", "training", "r.obj.age >= 65", "allow"]]
    r = client.put(
        "/v1/policies", json={"rules": rules, "model": default_model_text()}, headers=steward
    )
    assert r.json() == {"version": 3}
    plan = client.post("/v1/decisions", json=ask("patient_notes"), headers=trainer).json()
    assert plan["decision"] == "allow" and "65" in plan["row_filter"]


def test_simulation_reports_rows_gained_and_columns_unmasked(
    client: TestClient, steward: dict[str, str], demo: Gateway
) -> None:
    rules = [list(r) for r in demo.queries.policy().rules]
    # Drop the region condition and the identifier mask for trainers.
    rules[0][5] = "r.obj.consent_research == True"
    rules = [r for r in rules if not (r[0] == "p2" and r[3] == "pii.id")]
    r = client.post(
        "/v1/policies/simulate", json={"rules": rules, "purposes": ["training"]}, headers=steward
    )
    assert r.status_code == 200, r.text
    changes = {(c["principal"], c["dataset"]): c for c in r.json()["changes"]}
    notes = changes[("demo-trainer", "patient_notes")]
    assert notes["rows_gained"] > 0 and notes["rows_lost"] == 0
    assert notes["rows_after"] == notes["rows_before"] + notes["rows_gained"]
    assert "patient_id" in notes["columns_unmasked"]
    # Nothing was swapped in.
    assert client.get("/v1/policies", headers=steward).json()["version"] == 1
