"""Unlearning strategies: from an accepted erasure request to the jobs that make models forget.

Input: the runs that provenance says read the subject's rows (``SubjectLookup.runs_for_subject``)
and the recipes those runs registered. Output: one ``RunAction`` per affected run (what will be
done, or why nothing can be) and the ``JobSpec`` values to enqueue.

- ``retrain``: run the recipe's trainer again, reading through the connector, under a new run
  id and into a new output. The gateway already withholds the erased rows (the request's
  exclusions), so the new model never sees them; the new recipe names the old run in
  ``replaces``, which marks the old model superseded.
- ``unlearn`` (SISA, Bourtoule et al. 2021): a sharded model is one model per row-id shard, each
  shard read under its own run id. Provenance therefore knows which shards held the subject's
  rows, and only those shards are retrained (``--only-shards``) under new shard run ids; the
  other shard models are not touched.

A run without a recipe gets no job, and says so. A run whose model was already replaced (by a
retrain, or a newer shard) needs none: its replacement is an affected run of its own if it read
the subject's rows too.

Job ids derive from the request id, so planning the same request twice gives the same jobs
(the job manager's enqueue is idempotent), and a job that is run again after a crash reads under
the same run ids.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from govern.jobs.base import JobKind, JobSpec
from govern.provenance import SubjectRun
from govern.provenance.store import ProvenanceStore, validate_run_id
from govern.unlearning.erasure import ErasureService
from govern.unlearning.recipes import Recipe, RecipeInfo, RecipeStore

__all__ = [
    "NO_RECIPE",
    "RunAction",
    "UnlearningPlan",
    "UnlearningPlanner",
    "plan_unlearning",
    "request_tag",
    "trainer_argv",
]

NO_RECIPE = "no recipe: cannot retrain"
Mode = Literal["auto", "retrain"]
_RETRAIN_SUFFIX = re.compile(r"\.r-[0-9a-f]{8}$")


@dataclass(frozen=True)
class RunAction:
    """What an erasure request does about one affected run."""

    run_id: str
    action: Literal["retrain", "unlearn", "none"]
    reason: str
    model_run_id: str | None = None  # the model the run trained (itself, or the sharded model)
    shards: tuple[int, ...] = ()  # unlearn: the shards retrained

    def to_json(self) -> dict[str, object]:
        return {
            "action": self.action,
            "reason": self.reason,
            "model_run_id": self.model_run_id,
            "shards": list(self.shards),
        }


@dataclass(frozen=True)
class UnlearningPlan:
    actions: tuple[RunAction, ...] = ()
    specs: tuple[JobSpec, ...] = field(default_factory=tuple)

    def action_for(self, run_id: str) -> RunAction | None:
        return next((a for a in self.actions if a.run_id == run_id), None)


def request_tag(request_id: str) -> str:
    """Eight hex digits of the request id: names the runs and outputs a request's jobs make."""
    digest = request_id.removeprefix("er-")
    if not re.fullmatch(r"[0-9a-f]{8,}", digest):
        raise ValueError(f"not an erasure request id: {request_id[:64]!r}")
    return digest[:8]


def retrain_run_id(run_id: str, tag: str) -> str:
    """``<run>.r-<tag>``; a run that was itself a retrain keeps one suffix, not a chain."""
    return validate_run_id(f"{_RETRAIN_SUFFIX.sub('', run_id)}.r-{tag}")


def retrain_output(output: str, tag: str) -> str:
    return f"{_RETRAIN_SUFFIX.sub('', output.rstrip('/'))}.r-{tag}"


def trainer_argv(
    recipe: Recipe,
    run_id: str,
    *,
    output: str | None = None,
    replaces: str | None = None,
    only_shards: Sequence[int] = (),
    shard_tag: str | None = None,
) -> tuple[str, ...]:
    """The trainer command line a recipe stands for (the options every recipe trainer takes,
    see docs/unlearning.md). Flight URL and token come from the job's environment."""
    argv: list[str] = ["python", recipe.trainer, "--run-id", run_id, "--purpose", recipe.purpose]
    for d in recipe.datasets:
        argv += ["--dataset", f"{d.name}@{d.version}"]
        if d.columns is not None:
            argv += ["--columns", f"{d.name}={','.join(d.columns)}"]
    argv += [
        "--strategy",
        recipe.strategy,
        "--shards",
        str(recipe.shards),
        "--epochs",
        str(recipe.epochs),
        "--seed",
        str(recipe.seed),
        "--lr",
        repr(recipe.lr),
        "--output",
        output if output is not None else recipe.output,
    ]
    if replaces is not None:
        argv += ["--replaces", replaces]
    if only_shards:
        argv += ["--only-shards", ",".join(str(k) for k in sorted(only_shards))]
    if shard_tag is not None:
        argv += ["--shard-tag", shard_tag]
    return tuple(argv)


def plan_unlearning(
    request_id: str,
    affected: Sequence[SubjectRun],
    recipes: RecipeStore,
    *,
    mode: Mode = "auto",
    workdir: Path | None = None,
) -> UnlearningPlan:
    tag = request_tag(request_id)
    run_ids = [a.run.id for a in affected]
    shard_of = recipes.shards_of(run_ids)
    models = recipes.many(sorted({*run_ids, *(m for m, _ in shard_of.values())}))
    actions: list[RunAction] = []
    retrain: dict[str, RecipeInfo] = {}  # model run id -> its recipe
    unlearn: dict[str, set[int]] = {}  # model run id -> shards to retrain
    pending: list[tuple[str, str, int]] = []  # (shard run, model, shard) to unlearn
    for run_id in run_ids:
        if run_id in shard_of:
            model_id, k = shard_of[run_id]
            info = models.get(model_id)
            if info is None:  # unreachable: run_shards rows name an existing recipe
                actions.append(RunAction(run_id, "none", NO_RECIPE, model_id, (k,)))
            elif info.superseded_by is not None:
                actions.append(
                    RunAction(
                        run_id, "none", f"model superseded by run {info.superseded_by}", model_id
                    )
                )
            elif k >= len(info.recipe.shard_runs) or info.recipe.shard_runs[k] != run_id:
                current = info.recipe.shard_runs[k] if k < len(info.recipe.shard_runs) else None
                actions.append(
                    RunAction(
                        run_id,
                        "none",
                        f"shard {k} of {model_id} was already retrained (now run {current})",
                        model_id,
                        (k,),
                    )
                )
            elif mode == "retrain":
                retrain[model_id] = info
                actions.append(
                    RunAction(run_id, "retrain", f"shard {k} of {model_id}", model_id, (k,))
                )
            else:
                unlearn.setdefault(model_id, set()).add(k)
                pending.append((run_id, model_id, k))
            continue
        info = models.get(run_id)
        if info is None:
            actions.append(RunAction(run_id, "none", NO_RECIPE))
        elif info.superseded_by is not None:
            actions.append(
                RunAction(run_id, "none", f"superseded by run {info.superseded_by}", run_id)
            )
        else:
            retrain[run_id] = info
            actions.append(RunAction(run_id, "retrain", f"{info.recipe.strategy} retrain", run_id))
    # Shard actions name the whole set of shards their model retrains.
    for run_id, model_id, k in pending:
        together = sorted(unlearn[model_id])
        actions.append(
            RunAction(
                run_id,
                "unlearn",
                f"shard {k} of {model_id}: retrain shards {together} only",
                model_id,
                tuple(together),
            )
        )
    specs: list[JobSpec] = []
    cwd = str(workdir) if workdir is not None else None
    for model_id, info in sorted(retrain.items()):
        new_id = retrain_run_id(model_id, tag)
        specs.append(
            _spec(
                "retrain",
                model_id,
                info,
                trainer_argv(
                    info.recipe,
                    new_id,
                    output=retrain_output(info.recipe.output, tag),
                    replaces=model_id,
                ),
                cwd,
            )
        )
    for model_id, shards in sorted(unlearn.items()):
        info = models[model_id]
        specs.append(
            _spec(
                "unlearn",
                model_id,
                info,
                trainer_argv(
                    info.recipe, model_id, only_shards=sorted(shards), shard_tag=f"u-{tag}"
                ),
                cwd,
            )
        )
    order = {r: i for i, r in enumerate(run_ids)}
    return UnlearningPlan(
        actions=tuple(sorted(actions, key=lambda a: order.get(a.run_id, 0))), specs=tuple(specs)
    )


def _spec(
    kind: JobKind, model_id: str, info: RecipeInfo, argv: tuple[str, ...], cwd: str | None
) -> JobSpec:
    return JobSpec(
        kind=kind,
        run_id=model_id,
        principal_id=info.principal_id,
        argv=argv,
        gpus=info.recipe.gpus,
        workdir=cwd,
    )


@dataclass(frozen=True)
class UnlearningPlanner:
    """An erasure request's affected runs and its plan under the configured strategy: the one
    composition the command that enqueues the jobs and the view that shows them both use."""

    erasure: ErasureService
    provenance: ProvenanceStore
    recipes: RecipeStore
    mode: Mode = "auto"
    workdir: Path | None = None

    def plan(self, request_id: str) -> tuple[list[SubjectRun], UnlearningPlan]:
        runs = self.erasure.affected_runs(request_id, self.provenance)
        plan = plan_unlearning(request_id, runs, self.recipes, mode=self.mode, workdir=self.workdir)
        return runs, plan
