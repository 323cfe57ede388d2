"""Unlearning strategies: from an accepted erasure request, the affected runs (real provenance
bitmaps in the store) and their recipes, to the jobs to run and the reason for every run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyroaring import BitMap

from govern.auth import Caller
from govern.gateway import Gateway
from govern.jobs import job_id_for
from govern.provenance import ProvenanceStore
from govern.settings import load_settings
from govern.store.migrate import upgrade
from govern.unlearning.recipes import RecipeBody, RecipeStore
from govern.unlearning.strategies import NO_RECIPE, plan_unlearning, request_tag, trainer_argv
from tests.conftest import MODEL_CACHE, TEST_ACTOR, raw_store

SHARDS = 4
ROWS = 40
# s1 owns rows 1, 3, 9 and 13: shards 1 and 3 of 4.
S1_ROWS = {1, 3, 9, 13}


def recipe(**changes: Any) -> RecipeBody:
    base: dict[str, Any] = {
        "trainer": "examples/train_reference.py",
        "datasets": [{"name": "notes", "version": 1, "columns": ["text", "sid"]}],
        "purpose": "training",
        "strategy": "sisa",
        "shards": SHARDS,
        "epochs": 2,
        "seed": 7,
        "lr": 0.05,
        "output": "/models/m",
    }
    return RecipeBody.model_validate({**base, **changes})


@contextmanager
def provenance(g: Gateway) -> Iterator[ProvenanceStore]:
    """The provenance store over the gateway's store, to plant the exact row sets runs received
    (a governed read delivers what the policy gives, not a chosen bitmap)."""
    db = raw_store(g)
    try:
        yield ProvenanceStore(db)
    finally:
        db.dispose()


@pytest.fixture
def runs(sqlite_gateway: Gateway) -> Iterator[ProvenanceStore]:
    with provenance(sqlite_gateway) as store:
        yield store


def setup(g: Gateway, runs: ProvenanceStore) -> tuple[Caller, int]:
    subjects = ["s1" if i in S1_ROWS else f"p{i}" for i in range(ROWS)]
    info = g.commands.register_dataset(
        "notes", pa.table({"sid": subjects, "text": ["t"] * ROWS}), "sid", TEST_ACTOR
    )
    g.commands.put_principal("alice", ["trainer"], {}, TEST_ACTOR)
    alice = g.decider.authenticate(g.commands.issue_token("alice", "trainer", TEST_ACTOR).token)
    g.commands.put_recipe(alice, "m", recipe())
    for k in range(SHARDS):
        runs.merge(f"m.shard-{k}", info.version_id, BitMap(range(k, ROWS, SHARDS)))
    g.commands.put_recipe(
        alice, "full", recipe(strategy="full", shards=1, output="/models/full", gpus=1)
    )
    runs.merge("full", info.version_id, BitMap(range(ROWS)))
    runs.open_run("bare", "alice", "training")
    runs.merge("bare", info.version_id, BitMap(range(ROWS)))
    runs.open_run("clean", "alice", "training")
    runs.merge("clean", info.version_id, BitMap([0, 2, 4]))
    return alice, info.version_id


def test_sisa_runs_unlearn_only_the_shards_that_held_the_subject(
    sqlite_gateway: Gateway, runs: ProvenanceStore
) -> None:
    g = sqlite_gateway
    setup(g, runs)
    request = g.commands.request_erasure("s1", None, "gdpr-art17", "officer")
    tag = request_tag(request.id)
    view = g.queries.erasure_request(request.id)
    plan = view.plan
    actions = {a.run_id: a for a in plan.actions}
    assert set(actions) == {"bare", "full", "m.shard-1", "m.shard-3"}  # not "clean"
    assert (actions["bare"].action, actions["bare"].reason) == ("none", NO_RECIPE)
    assert actions["full"].action == "retrain"
    assert actions["m.shard-1"].action == actions["m.shard-3"].action == "unlearn"
    assert actions["m.shard-1"].shards == (1, 3)
    retrain, unlearn = plan.specs
    assert (retrain.kind, retrain.run_id, retrain.principal_id) == ("retrain", "full", "alice")
    assert (retrain.gpus, retrain.workdir) == (1, None)  # the recipe's GPUs go with its job
    assert retrain.argv == (
        "python", "examples/train_reference.py", "--run-id", f"full.r-{tag}",
        "--purpose", "training", "--dataset", "notes@1", "--columns", "notes=text,sid",
        "--strategy", "full", "--shards", "1", "--epochs", "2", "--seed", "7", "--lr", "0.05",
        "--output", f"/models/full.r-{tag}", "--replaces", "full",
    )  # fmt: skip
    assert (unlearn.kind, unlearn.run_id) == ("unlearn", "m")
    assert unlearn.argv[-4:] == ("--only-shards", "1,3", "--shard-tag", f"u-{tag}")
    assert unlearn.argv[unlearn.argv.index("--output") + 1] == "/models/m"
    # Planning is deterministic, so the job manager's enqueue sees the same jobs again: the
    # request enqueued exactly the plan's jobs.
    assert g.queries.erasure_request(request.id).plan == plan
    assert {j.id for j in view.jobs} == {job_id_for(request.id, s) for s in plan.specs}
    assert {(j.kind, j.run_id, j.state) for j in view.jobs} == {
        ("retrain", "full", "pending"),
        ("unlearn", "m", "pending"),
    }
    assert view.info.state == "excluded" and view.info.subject_id == "s1"


def test_the_retrain_mode_retrains_sharded_models_in_full(sqlite_gateway: Gateway) -> None:
    g = sqlite_gateway
    with provenance(g) as store:
        setup(g, store)
        request = g.commands.request_erasure("s1", None, "gdpr-art17", "officer")
        affected = g.queries.runs_for_subject("s1")
        plan = plan_unlearning(request.id, affected, RecipeStore(store.db, store), mode="retrain")
    assert [(s.kind, s.run_id) for s in plan.specs] == [("retrain", "full"), ("retrain", "m")]
    (m,) = [s for s in plan.specs if s.run_id == "m"]
    assert "--only-shards" not in m.argv and "--replaces" in m.argv


def test_a_gateway_in_retrain_mode_plans_and_enqueues_full_retrains(tmp_path: Path) -> None:
    settings = load_settings(
        home=tmp_path / "home",
        config=tmp_path / "none.toml",
        llm_cache_dir=MODEL_CACHE,
        unlearning_strategy="retrain",
    )
    upgrade(settings.resolved_database_url)
    g = Gateway.open(settings)
    try:
        with provenance(g) as store:
            setup(g, store)
        request = g.commands.request_erasure("s1", None, "gdpr-art17", "officer")
        view = g.queries.erasure_request(request.id)
        specs = view.plan.specs
        assert [(s.kind, s.run_id) for s in specs] == [("retrain", "full"), ("retrain", "m")]
        (m,) = [s for s in specs if s.run_id == "m"]
        assert "--only-shards" not in m.argv and "--replaces" in m.argv
        assert {(j.kind, j.run_id) for j in view.jobs} == {("retrain", "full"), ("retrain", "m")}
    finally:
        g.close()


def test_superseded_and_already_retrained_runs_need_nothing(
    sqlite_gateway: Gateway, runs: ProvenanceStore
) -> None:
    g = sqlite_gateway
    alice, version_id = setup(g, runs)
    # full was retrained (without s1's rows); shard 1 of m was retrained under a new run.
    g.commands.put_recipe(
        alice, "full.r-00000000", recipe(strategy="full", shards=1, replaces="full")
    )
    runs.merge("full.r-00000000", version_id, BitMap(range(ROWS)) - BitMap(S1_ROWS))
    shard_runs = [f"m.shard-{k}" for k in range(SHARDS)]
    shard_runs[1] = "m.shard-1.u-00000000"
    g.commands.put_recipe(alice, "m", recipe(shard_runs=shard_runs))
    runs.merge(shard_runs[1], version_id, BitMap(range(1, ROWS, SHARDS)) - BitMap(S1_ROWS))
    request = g.commands.request_erasure("s1", ["notes"], "gdpr-art17", "officer")
    view = g.queries.erasure_request(request.id)
    plan = view.plan
    actions = {a.run_id: a for a in plan.actions}
    assert "superseded by run full.r-00000000" in actions["full"].reason
    assert actions["m.shard-1"].action == "none"
    assert "already retrained" in actions["m.shard-1"].reason
    assert actions["m.shard-3"].action == "unlearn"
    (spec,) = plan.specs
    assert spec.argv[spec.argv.index("--only-shards") + 1] == "3"
    assert [j.id for j in view.jobs] == [job_id_for(request.id, spec)]


def test_an_unknown_subject_plans_no_jobs(sqlite_gateway: Gateway, runs: ProvenanceStore) -> None:
    setup(sqlite_gateway, runs)
    request = sqlite_gateway.commands.request_erasure("nobody", None, "ccpa", "officer")
    view = sqlite_gateway.queries.erasure_request(request.id)
    assert view.plan.specs == ()
    assert view.jobs == [] and view.affected_runs == []
    # Nothing found: complete at once, and the subject id was never stored.
    assert (view.info.state, view.info.excluded_rows, view.info.subject_id) == (
        "completed",
        0,
        None,
    )


def test_the_trainer_command_is_rendered_from_the_recipe_fields_only() -> None:
    r = recipe(datasets=[{"name": "a", "version": 3}, {"name": "b", "version": 1}]).to_recipe("x")
    argv = trainer_argv(r, "x")
    assert argv[:4] == ("python", "examples/train_reference.py", "--run-id", "x")
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--dataset"] == ["a@3", "b@1"]
    assert "--columns" not in argv and "--flight-url" not in argv and "--token" not in argv
