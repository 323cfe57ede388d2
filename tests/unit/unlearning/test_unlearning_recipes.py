"""Run recipes in the store: who may register one, what is refused, and what is logged."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError as PydanticValidationError

from govern.auth import Caller
from govern.errors import Conflict, Forbidden, NotFound, ValidationError
from govern.gateway import Gateway
from govern.provenance import ProvenanceStore
from govern.unlearning.recipes import RecipeBody, RecipeStore, shard_run_id
from tests.conftest import TEST_ACTOR, raw_store


def caller(g: Gateway, pid: str, role: str) -> Caller:
    g.commands.put_principal(pid, [role], {}, TEST_ACTOR)
    return g.decider.authenticate(g.commands.issue_token(pid, role, TEST_ACTOR).token)


def opened(g: Gateway, run_ids: list[str]) -> dict[str, str]:
    """{run id: its principal} of the runs among ``run_ids`` that exist."""
    found = {}
    for run_id in run_ids:
        try:
            run, _ = g.queries.run(g.operator, run_id)
        except NotFound:
            continue
        found[run_id] = run.principal_id
    return found


def body(**changes: Any) -> RecipeBody:
    base: dict[str, Any] = {
        "trainer": "examples/train_reference.py",
        "datasets": [{"name": "patient_notes", "version": 1, "columns": ["note"]}],
        "purpose": "training",
        "strategy": "sisa",
        "shards": 3,
        "epochs": 2,
        "seed": 5,
        "lr": 0.01,
        "output": "/models/m",
    }
    return RecipeBody.model_validate({**base, **changes})


def test_registering_a_recipe_opens_the_run_and_its_shard_runs_for_the_caller(
    sqlite_gateway: Gateway,
) -> None:
    g = sqlite_gateway
    alice = caller(g, "alice", "trainer")
    info = g.commands.put_recipe(alice, "m", body())
    assert info.principal_id == "alice"
    assert info.recipe.shard_runs == ("m.shard-0", "m.shard-1", "m.shard-2")
    runs = opened(g, ["m", *info.recipe.shard_runs])
    assert set(runs.values()) == {"alice"} and len(runs) == 4
    db = raw_store(g)  # read only: which model a shard run belongs to has no query
    try:
        recipes = RecipeStore(db, ProvenanceStore(db))
        assert recipes.shards_of(["m.shard-1", "m", "x"]) == {"m.shard-1": ("m", 1)}
    finally:
        db.dispose()
    stored = g.queries.recipe(alice, "m")
    assert stored.recipe == info.recipe and stored.superseded_by is None
    logged = [
        v.leaf
        for v in g.queries.ledger_entries(g.operator, limit=1000)
        if b'"run.recipe"' in v.leaf
    ]
    assert len(logged) == 1 and b'"run_id":"m"' in logged[0]
    [entry] = g.queries.ledger_entries(g.operator, kind="run.recipe")
    assert (entry.entry["actor"], entry.entry["object"]) == ("alice", "run:m")
    assert entry.entry["data"]["principal_id"] == "alice"


def test_only_the_owner_or_an_admin_may_replace_a_recipe(sqlite_gateway: Gateway) -> None:
    g = sqlite_gateway
    alice = caller(g, "alice", "trainer")
    bob = caller(g, "bob", "trainer")
    admin = caller(g, "root", "admin")
    g.commands.put_recipe(alice, "m", body())
    with pytest.raises(Forbidden):
        g.commands.put_recipe(bob, "m", body(epochs=9))
    # Bob cannot take a shard run id of Alice's model for a model of his own either.
    with pytest.raises(Forbidden):
        g.commands.put_recipe(bob, "b", body(shard_runs=["m.shard-0", "b.1", "b.2"]))
    changed = g.commands.put_recipe(admin, "m", body(epochs=9))
    assert (changed.principal_id, changed.registered_by, changed.recipe.epochs) == (
        "alice",
        "root",
        9,
    )
    # Someone else's recipe reads as missing; reviewers may read it.
    with pytest.raises(NotFound):
        g.queries.recipe(bob, "m")
    assert g.queries.recipe(caller(g, "audit", "auditor"), "m").run_id == "m"
    # The refused replacements logged nothing; the two accepted ones did.
    logged = g.queries.ledger_entries(g.operator, kind="run.recipe")
    assert [v.entry["actor"] for v in logged] == ["alice", "root"]


def test_unknown_trainers_other_purposes_and_foreign_replacements_are_refused(
    sqlite_gateway: Gateway,
) -> None:
    g = sqlite_gateway
    alice = caller(g, "alice", "trainer")
    bob = caller(g, "bob", "trainer")
    with pytest.raises(ValidationError) as exc:
        g.commands.put_recipe(alice, "m", body(trainer="/bin/sh"))
    assert exc.value.details["allowed"] == ["examples/train_reference.py"]
    g.commands.put_recipe(alice, "m", body())
    with pytest.raises(Conflict):
        g.commands.put_recipe(alice, "m", body(purpose="evaluation"))
    with pytest.raises(Forbidden):
        g.commands.put_recipe(bob, "b", body(strategy="full", shards=1, replaces="m"))
    with pytest.raises(NotFound):
        g.commands.put_recipe(alice, "m2", body(strategy="full", shards=1, replaces="nothing"))
    # Refused before anything was stored: neither run was opened, nothing was logged.
    assert opened(g, ["m2", "b"]) == {}
    assert len(g.queries.ledger_entries(g.operator, kind="run.recipe")) == 1


def test_a_retrain_marks_the_run_it_replaces_superseded(sqlite_gateway: Gateway) -> None:
    g = sqlite_gateway
    alice = caller(g, "alice", "trainer")
    g.commands.put_recipe(alice, "full", body(strategy="full", shards=1))
    g.commands.put_recipe(
        alice, "full.r-0000abcd", body(strategy="full", shards=1, replaces="full")
    )
    old = g.queries.recipe(g.operator, "full")
    assert old.superseded_by == "full.r-0000abcd"


@pytest.mark.parametrize(
    "changes",
    [
        {"strategy": "full", "shards": 2},
        {"shard_runs": ["a", "b"]},
        {"strategy": "full", "shards": 1, "shard_runs": ["a"]},
        {"output": "/tmp/x\ny"},
        {"datasets": []},
        {"datasets": [{"name": "Bad Name", "version": 1}]},
        {"shards": 0},
        {"extra": 1},
    ],
)
def test_malformed_recipes_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises((PydanticValidationError, ValueError)):
        body(**changes)


def test_shard_run_ids_carry_the_retrain_tag() -> None:
    assert shard_run_id("m", 2) == "m.shard-2"
    assert shard_run_id("m", 2, "u-0123abcd") == "m.shard-2.u-0123abcd"
