"""Unlearning strategies: from an accepted erasure request, the affected runs (real provenance
bitmaps in the store) and their recipes, to the jobs to run and the reason for every run."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pyroaring import BitMap

from govern.auth import Caller
from govern.gateway import Gateway
from govern.provenance import SubjectLookup
from govern.unlearning.recipes import RecipeBody
from govern.unlearning.strategies import NO_RECIPE, plan_unlearning, request_tag, trainer_argv

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


def setup(g: Gateway) -> tuple[Caller, int]:
    subjects = ["s1" if i in S1_ROWS else f"p{i}" for i in range(ROWS)]
    info = g.catalog.register_version(
        "notes", pa.table({"sid": subjects, "text": ["t"] * ROWS}), "sid"
    )
    g.principals.upsert("alice", ["trainer"], {})
    alice = g.tokens.verify(g.tokens.issue("alice", "trainer"))
    g.put_recipe(alice, "m", recipe())
    for k in range(SHARDS):
        g.provenance.merge(f"m.shard-{k}", info.version_id, BitMap(range(k, ROWS, SHARDS)))
    g.put_recipe(alice, "full", recipe(strategy="full", shards=1, output="/models/full", gpus=1))
    g.provenance.merge("full", info.version_id, BitMap(range(ROWS)))
    g.provenance.open_run("bare", "alice", "training")
    g.provenance.merge("bare", info.version_id, BitMap(range(ROWS)))
    g.provenance.open_run("clean", "alice", "training")
    g.provenance.merge("clean", info.version_id, BitMap([0, 2, 4]))
    return alice, info.version_id


def test_sisa_runs_unlearn_only_the_shards_that_held_the_subject(sqlite_gateway: Gateway) -> None:
    g = sqlite_gateway
    setup(g)
    request = g.request_erasure("s1", None, "gdpr-art17", "officer")
    tag = request_tag(request.id)
    plan = g.unlearning_plan(request)
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
    # Planning is deterministic, so the job manager's enqueue sees the same jobs again.
    assert g.unlearning_plan(request) == plan


def test_the_retrain_mode_retrains_sharded_models_in_full(sqlite_gateway: Gateway) -> None:
    g = sqlite_gateway
    setup(g)
    request = g.request_erasure("s1", None, "gdpr-art17", "officer")
    lookup = SubjectLookup(g.provenance)
    try:
        affected = lookup.runs_for_subject("s1")
    finally:
        lookup.close()
    plan = plan_unlearning(request.id, affected, g.recipes, mode="retrain")
    assert [(s.kind, s.run_id) for s in plan.specs] == [("retrain", "full"), ("retrain", "m")]
    (m,) = [s for s in plan.specs if s.run_id == "m"]
    assert "--only-shards" not in m.argv and "--replaces" in m.argv


def test_superseded_and_already_retrained_runs_need_nothing(sqlite_gateway: Gateway) -> None:
    g = sqlite_gateway
    alice, version_id = setup(g)
    # full was retrained (without s1's rows); shard 1 of m was retrained under a new run.
    g.put_recipe(alice, "full.r-00000000", recipe(strategy="full", shards=1, replaces="full"))
    g.provenance.merge("full.r-00000000", version_id, BitMap(range(ROWS)) - BitMap(S1_ROWS))
    runs = [f"m.shard-{k}" for k in range(SHARDS)]
    runs[1] = "m.shard-1.u-00000000"
    g.put_recipe(alice, "m", recipe(shard_runs=runs))
    g.provenance.merge(runs[1], version_id, BitMap(range(1, ROWS, SHARDS)) - BitMap(S1_ROWS))
    plan = g.unlearning_plan(g.request_erasure("s1", ["notes"], "gdpr-art17", "officer"))
    actions = {a.run_id: a for a in plan.actions}
    assert "superseded by run full.r-00000000" in actions["full"].reason
    assert actions["m.shard-1"].action == "none"
    assert "already retrained" in actions["m.shard-1"].reason
    assert actions["m.shard-3"].action == "unlearn"
    (spec,) = plan.specs
    assert spec.argv[spec.argv.index("--only-shards") + 1] == "3"


def test_an_unknown_subject_plans_no_jobs(sqlite_gateway: Gateway) -> None:
    setup(sqlite_gateway)
    request = sqlite_gateway.request_erasure("nobody", None, "ccpa", "officer")
    assert sqlite_gateway.unlearning_plan(request).specs == ()


def test_the_trainer_command_is_rendered_from_the_recipe_fields_only() -> None:
    r = recipe(datasets=[{"name": "a", "version": 3}, {"name": "b", "version": 1}]).to_recipe("x")
    argv = trainer_argv(r, "x")
    assert argv[:4] == ("python", "examples/train_reference.py", "--run-id", "x")
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--dataset"] == ["a@3", "b@1"]
    assert "--columns" not in argv and "--flight-url" not in argv and "--token" not in argv
