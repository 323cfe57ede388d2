"""Run recipes: how a training run was made, so that an erasure can make it again.

A trainer registers its recipe (``PUT /v1/runs/{run_id}/recipe`` or the Flight action
``recipe.put``) before it reads: the datasets and pinned versions it reads, the purpose and
columns, the strategy (``full``: one model; ``sisa``: one model per row-id shard, each shard read
under its own run id), the hyper-parameters that make it reproducible, where the model goes, and
which trainer script made it. Unlearning strategies (``govern.unlearning.strategies``) turn a
recipe back into a command line.

The trainer is a name from ``settings.unlearning_trainers``, never a free command: a recipe is
caller input, and the gateway later runs it with a fresh token for the run's owner.

Registering a recipe opens the run (and each shard's run) for the caller, exactly as a first
read would, so the same ownership rule holds: a run belongs to one principal and one purpose.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select

from govern.auth import Action, Caller, is_allowed
from govern.catalog import validate_dataset_name
from govern.catalog.names import validate_column_name
from govern.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    GovernError,
    NotFound,
    ValidationError,
)
from govern.provenance.store import ProvenanceStore, validate_run_id
from govern.store.db import Database
from govern.store.models import Run, RunRecipe, RunShard, as_utc

__all__ = [
    "MAX_RECIPE_SHARDS",
    "Recipe",
    "RecipeBody",
    "RecipeDataset",
    "RecipeInfo",
    "RecipeStore",
    "shard_run_id",
]

MAX_RECIPE_SHARDS = 256
Strategy = Literal["full", "sisa"]
_SAFE_TEXT = re.compile(r"^[^\x00-\x1f]+$")


def shard_run_id(model_run_id: str, shard: int, tag: str | None = None) -> str:
    """The run id under which shard ``shard`` of a sharded model reads (``tag``: a retrain)."""
    return f"{model_run_id}.shard-{shard}" + (f".{tag}" if tag else "")


@dataclass(frozen=True)
class RecipeDataset:
    name: str
    version: int
    columns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Recipe:
    trainer: str
    datasets: tuple[RecipeDataset, ...]
    purpose: str
    strategy: Strategy
    shards: int
    epochs: int
    seed: int
    lr: float
    output: str
    # For sisa: the run id each shard's model was trained under, by shard index.
    shard_runs: tuple[str, ...] = ()
    # The run this one retrained (its model is superseded by this one's).
    replaces: str | None = None
    # GPUs a retrain job asks its backend for (Ray, Kubernetes).
    gpus: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "trainer": self.trainer,
            "datasets": [
                {
                    "name": d.name,
                    "version": d.version,
                    "columns": list(d.columns) if d.columns is not None else None,
                }
                for d in self.datasets
            ],
            "purpose": self.purpose,
            "strategy": self.strategy,
            "shards": self.shards,
            "epochs": self.epochs,
            "seed": self.seed,
            "lr": self.lr,
            "output": self.output,
            "shard_runs": list(self.shard_runs),
            "replaces": self.replaces,
            "gpus": self.gpus,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Recipe:
        return cls(
            trainer=str(data["trainer"]),
            datasets=tuple(
                RecipeDataset(
                    name=str(d["name"]),
                    version=int(d["version"]),
                    columns=tuple(d["columns"]) if d.get("columns") is not None else None,
                )
                for d in data["datasets"]
            ),
            purpose=str(data["purpose"]),
            strategy="sisa" if data["strategy"] == "sisa" else "full",
            shards=int(data["shards"]),
            epochs=int(data["epochs"]),
            seed=int(data["seed"]),
            lr=float(data["lr"]),
            output=str(data["output"]),
            shard_runs=tuple(str(r) for r in data.get("shard_runs") or ()),
            replaces=data.get("replaces"),
            gpus=int(data.get("gpus") or 0),
        )


class RecipeDatasetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=63)
    version: int = Field(ge=1, description="The version read, pinned so a retrain reads it too.")
    columns: list[str] | None = Field(None, max_length=1000)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        try:
            return validate_dataset_name(v)
        except GovernError as exc:
            raise ValueError(exc.message) from None

    @field_validator("columns")
    @classmethod
    def _columns(cls, v: list[str] | None) -> list[str] | None:
        try:
            return [validate_column_name(c) for c in v] if v is not None else None
        except GovernError as exc:
            raise ValueError(exc.message) from None


class RecipeBody(BaseModel):
    """A recipe as a trainer sends it (REST body and Flight action body)."""

    model_config = ConfigDict(extra="forbid")
    trainer: str = Field(
        min_length=1, max_length=200, description="A name from unlearning_trainers."
    )
    datasets: list[RecipeDatasetBody] = Field(min_length=1, max_length=16)
    purpose: str = Field(min_length=1, max_length=100)
    strategy: Strategy = "full"
    shards: int = Field(1, ge=1, le=MAX_RECIPE_SHARDS)
    epochs: int = Field(1, ge=1, le=10_000)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    lr: float = Field(0.01, gt=0, le=10)
    output: str = Field(min_length=1, max_length=1000, description="Where the model is written.")
    shard_runs: list[str] | None = Field(
        None, max_length=MAX_RECIPE_SHARDS, description="Default: <run_id>.shard-<k>."
    )
    replaces: str | None = Field(None, min_length=1, max_length=200)
    gpus: int = Field(0, ge=0, le=64, description="GPUs a retrain job asks for.")

    @field_validator("trainer", "output")
    @classmethod
    def _printable(cls, v: str) -> str:
        if not _SAFE_TEXT.fullmatch(v):
            raise ValueError("control characters are not allowed")
        return v

    @model_validator(mode="after")
    def _shape(self) -> RecipeBody:
        if self.strategy == "full" and self.shards != 1:
            raise ValueError("strategy full trains one model: shards must be 1")
        if self.shard_runs is not None:
            if self.strategy != "sisa":
                raise ValueError("shard_runs belong to strategy sisa")
            if len(self.shard_runs) != self.shards:
                raise ValueError("shard_runs needs one run id per shard")
        return self

    def to_recipe(self, run_id: str) -> Recipe:
        shard_runs: tuple[str, ...] = ()
        if self.strategy == "sisa":
            shard_runs = tuple(
                self.shard_runs or [shard_run_id(run_id, k) for k in range(self.shards)]
            )
        return Recipe(
            trainer=self.trainer,
            datasets=tuple(
                RecipeDataset(
                    d.name, d.version, tuple(d.columns) if d.columns is not None else None
                )
                for d in self.datasets
            ),
            purpose=self.purpose,
            strategy=self.strategy,
            shards=self.shards,
            epochs=self.epochs,
            seed=self.seed,
            lr=self.lr,
            output=self.output,
            shard_runs=shard_runs,
            replaces=self.replaces,
            gpus=self.gpus,
        )


@dataclass(frozen=True)
class RecipeInfo:
    run_id: str
    principal_id: str
    recipe: Recipe
    superseded_by: str | None
    registered_by: str
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "principal_id": self.principal_id,
            "recipe": self.recipe.to_json(),
            "superseded_by": self.superseded_by,
            "registered_by": self.registered_by,
            "updated_at": self.updated_at.isoformat(),
        }


class RecipeStore:
    """Recipes in the store (``run_recipes``) and which model each shard run belongs to
    (``run_shards``)."""

    def __init__(self, db: Database, provenance: ProvenanceStore) -> None:
        self.db = db
        self.provenance = provenance

    def put(
        self,
        caller: Caller,
        run_id: str,
        body: RecipeBody,
        trainers: Sequence[str],
    ) -> RecipeInfo:
        validate_run_id(run_id)
        recipe = body.to_recipe(run_id)
        if recipe.trainer not in trainers:
            raise ValidationError(
                f"trainer {recipe.trainer[:200]!r} is not one this gateway may run",
                details={"trainer": recipe.trainer[:200], "allowed": list(trainers)},
            )
        for r in recipe.shard_runs:
            validate_run_id(r)
        if len({run_id, *recipe.shard_runs}) != 1 + len(recipe.shard_runs):
            raise BadRequest("shard run ids must differ from each other and from the run id")
        if recipe.replaces is not None:
            validate_run_id(recipe.replaces)
            if recipe.replaces == run_id or recipe.replaces in recipe.shard_runs:
                raise BadRequest("a run cannot replace itself")
        any_run = is_allowed(caller.role, Action.RECIPES_ANY)
        existing = self.provenance.runs([run_id]).get(run_id)
        if recipe.replaces is not None:
            owner_of_new = existing.principal_id if existing is not None else caller.id
            self._check_replaces(recipe.replaces, owner_of_new)
        if existing is None:
            owner = self.provenance.open_run(run_id, caller.id, recipe.purpose).principal_id
        else:
            owner = existing.principal_id
            if owner != caller.id and not any_run:
                raise Forbidden(
                    f"run {run_id!r} belongs to another principal", details={"run_id": run_id}
                )
            if existing.purpose != recipe.purpose:
                raise Conflict(
                    f"run {run_id!r} was started for purpose {existing.purpose!r}",
                    details={"run_id": run_id, "purpose": existing.purpose},
                )
        # Shard runs belong to the model's owner, who reads under them.
        for r in recipe.shard_runs:
            self.provenance.open_run(r, owner, recipe.purpose)
        now = datetime.now(UTC)
        with self.db.session() as s:
            if recipe.replaces is not None:
                old = s.get(RunRecipe, recipe.replaces)
                if old is not None:  # checked above; recipes are never deleted
                    old.superseded_by = run_id
                    old.updated_at = now
            row = s.get(RunRecipe, run_id)
            if row is None:
                row = RunRecipe(
                    run_id=run_id,
                    recipe=recipe.to_json(),
                    registered_by=caller.id,
                    created_at=now,
                    updated_at=now,
                )
                s.add(row)
            else:
                row.recipe = recipe.to_json()
                row.registered_by = caller.id
                row.updated_at = now
            s.flush()  # the shard rows below name this recipe
            for k, r in enumerate(recipe.shard_runs):
                shard = s.get(RunShard, r)
                if shard is None:
                    s.add(RunShard(run_id=r, model_run_id=run_id, shard=k))
                elif (shard.model_run_id, shard.shard) != (run_id, k):
                    raise Conflict(
                        f"run {r!r} already trained shard {shard.shard} of {shard.model_run_id!r}",
                        details={"run_id": r},
                    )
            s.flush()
            return _info(row, owner)

    def _check_replaces(self, replaces: str, owner: str) -> None:
        """A run may replace only a run with a recipe, of the same owner."""
        with self.db.session() as s:
            old = s.get(RunRecipe, replaces)
            old_run = s.get(Run, replaces)
            if old is None or old_run is None:
                raise NotFound(
                    f"no recipe for run {replaces!r} to replace", details={"run_id": replaces}
                )
            if old_run.principal_id != owner:
                raise Forbidden(
                    f"run {replaces!r} belongs to another principal", details={"run_id": replaces}
                )

    def get(self, run_id: str) -> RecipeInfo | None:
        with self.db.session() as s:
            row = s.get(RunRecipe, run_id)
            if row is None:
                return None
            run = s.get(Run, run_id)
            return _info(row, run.principal_id if run is not None else row.registered_by)

    def many(self, run_ids: Sequence[str]) -> dict[str, RecipeInfo]:
        if not run_ids:
            return {}
        with self.db.session() as s:
            rows = s.execute(
                select(RunRecipe, Run.principal_id)
                .join(Run, Run.id == RunRecipe.run_id)
                .where(RunRecipe.run_id.in_(list(run_ids)))
            ).all()
            return {r.run_id: _info(r, owner) for r, owner in rows}

    def shards_of(self, run_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        """{shard run id: (model run id, shard index)} for those of ``run_ids`` that trained a
        shard of a sharded model."""
        if not run_ids:
            return {}
        with self.db.session() as s:
            rows = s.scalars(select(RunShard).where(RunShard.run_id.in_(list(run_ids)))).all()
            return {r.run_id: (r.model_run_id, int(r.shard)) for r in rows}


def _info(row: RunRecipe, owner: str) -> RecipeInfo:
    updated = row.updated_at
    updated = as_utc(updated)
    return RecipeInfo(
        run_id=row.run_id,
        principal_id=owner,
        recipe=Recipe.from_json(row.recipe),
        superseded_by=row.superseded_by,
        registered_by=row.registered_by,
        updated_at=updated,
    )
