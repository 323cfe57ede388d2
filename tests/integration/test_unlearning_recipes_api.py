"""Run recipes over REST (PUT/GET /v1/runs/{run_id}/recipe) and over Flight (the recipe.put and
recipe.get actions the trainer uses): owners and admins only, bad input refused."""

from __future__ import annotations

from typing import Any

import govern_connect
import pyarrow.flight as flight
import pytest
from fastapi.testclient import TestClient

from govern.flight import FlightServer
from govern.gateway import Gateway
from tests.conftest import TEST_ACTOR, TokenFactory, auth

RECIPE: dict[str, Any] = {
    "trainer": "examples/train_reference.py",
    "datasets": [{"name": "patient_notes", "version": 1, "columns": ["note", "age"]}],
    "purpose": "training",
    "strategy": "sisa",
    "shards": 2,
    "epochs": 3,
    "seed": 1,
    "lr": 0.01,
    "output": "/models/r1",
}


def code(exc: BaseException) -> str | None:
    body = govern_connect.error_body(exc)
    return str(body["error"]) if body else None


def test_owners_register_recipes_and_others_may_not(
    client: TestClient, token_for: TokenFactory, gateway: Gateway
) -> None:
    alice = auth(token_for("alice", "trainer"))
    bob = auth(token_for("bob", "trainer"))
    r = client.put("/v1/runs/r1/recipe", json=RECIPE, headers=alice)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["run_id"], body["principal_id"], body["superseded_by"]) == ("r1", "alice", None)
    assert body["recipe"]["shard_runs"] == ["r1.shard-0", "r1.shard-1"]
    assert client.get("/v1/runs/r1/recipe", headers=alice).json()["recipe"] == body["recipe"]
    # The run now exists, and is Alice's.
    assert client.get("/v1/runs/r1", headers=alice).json()["principal_id"] == "alice"

    r = client.put("/v1/runs/r1/recipe", json={**RECIPE, "epochs": 9}, headers=bob)
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert client.get("/v1/runs/r1/recipe", headers=bob).status_code == 404
    admin = auth(token_for("root", "admin"))
    r = client.put("/v1/runs/r1/recipe", json={**RECIPE, "epochs": 9}, headers=admin)
    assert r.status_code == 200 and r.json()["principal_id"] == "alice"
    assert (
        client.get("/v1/runs/r1/recipe", headers=auth(token_for("aud", "auditor"))).json()[
            "recipe"
        ]["epochs"]
        == 9
    )
    logged = gateway.queries.ledger_entries(gateway.operator, limit=10_000, kind="run.recipe")
    assert [(e.entry["actor"], e.entry["object"]) for e in logged] == [
        ("alice", "run:r1"),
        ("root", "run:r1"),
    ]


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"trainer": "/usr/bin/python"}, 422),
        ({"strategy": "full"}, 422),  # two shards for one model
        ({"shards": 0}, 422),
        ({"output": ""}, 422),
        ({"unknown": True}, 422),
    ],
)
def test_bad_recipes_are_refused_with_the_error_shape(
    client: TestClient, token_for: TokenFactory, changes: dict[str, Any], status: int
) -> None:
    r = client.put(
        "/v1/runs/r2/recipe", json={**RECIPE, **changes}, headers=auth(token_for("a", "trainer"))
    )
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error", "message", "details"}


def test_recipe_routes_need_a_token(client: TestClient) -> None:
    assert client.put("/v1/runs/r1/recipe", json=RECIPE).status_code == 401
    assert client.get("/v1/runs/r1/recipe").status_code == 401


def test_the_trainer_registers_over_flight_with_its_own_token(
    gateway: Gateway, server: FlightServer
) -> None:
    trainer = govern_connect.connect(
        server.location, gateway.commands.issue_token("demo-trainer", "trainer", TEST_ACTOR).token
    )
    stored = trainer.put_recipe("fl-1", RECIPE)
    assert stored["principal_id"] == "demo-trainer"
    assert trainer.get_recipe("fl-1")["recipe"] == stored["recipe"]
    gateway.commands.put_principal("other", ["trainer"], {}, TEST_ACTOR)
    other = govern_connect.connect(
        server.location, gateway.commands.issue_token("other", "trainer", TEST_ACTOR).token
    )
    with pytest.raises(flight.FlightUnauthorizedError) as denied:
        other.put_recipe("fl-1", RECIPE)
    assert code(denied.value) == "forbidden"
    with pytest.raises(flight.FlightError) as missing:
        other.get_recipe("fl-1")
    assert code(missing.value) == "not_found"
    with pytest.raises(flight.FlightError) as bad:
        trainer.put_recipe("fl-2", {**RECIPE, "trainer": "rm"})
    assert code(bad.value) == "invalid"
    with pytest.raises(flight.FlightUnauthenticatedError):
        govern_connect.connect(server.location, "not-a-token").get_recipe("fl-1")
