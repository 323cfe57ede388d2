"""Training runs: what each run read (provenance), and which runs read a data subject's rows."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from govern.api.deps import CurrentCaller, GatewayDep, require
from govern.auth import Action, Caller
from govern.unlearning.recipes import RecipeBody, RecipeInfo

router = APIRouter(prefix="/v1/runs", tags=["runs"])


class RunReadOut(BaseModel):
    dataset: str
    version: int
    row_count: int


class RunOut(BaseModel):
    id: str
    principal_id: str
    purpose: str
    created_at: datetime
    row_count: int
    reads: list[RunReadOut]


class SubjectReadOut(BaseModel):
    dataset: str
    version: int
    rows: int


class SubjectRunOut(BaseModel):
    run_id: str
    principal_id: str
    purpose: str
    created_at: datetime
    reads: list[SubjectReadOut]


class SubjectRunsOut(BaseModel):
    subject_id: str
    runs: list[SubjectRunOut]


Reviewer = Annotated[Caller, Depends(require(Action.RUNS_READ))]


@router.get("", response_model=SubjectRunsOut)
def runs_for_subject(
    gateway: GatewayDep,
    _: Reviewer,
    subject_id: Annotated[str, Query(min_length=1, max_length=200)],
    dataset: Annotated[list[str] | None, Query(max_length=100)] = None,
) -> SubjectRunsOut:
    found = gateway.queries.runs_for_subject(subject_id, dataset)
    return SubjectRunsOut(
        subject_id=subject_id,
        runs=[
            SubjectRunOut(
                run_id=r.run.id,
                principal_id=r.run.principal_id,
                purpose=r.run.purpose,
                created_at=r.run.created_at,
                reads=[
                    SubjectReadOut(dataset=x.dataset, version=x.version, rows=x.rows)
                    for x in r.reads
                ],
            )
            for r in found
        ],
    )


@router.get("/{run_id}", response_model=RunOut)
def get_run(run_id: str, gateway: GatewayDep, caller: CurrentCaller) -> RunOut:
    run, reads = gateway.queries.run(caller, run_id)
    return RunOut(
        id=run.id,
        principal_id=run.principal_id,
        purpose=run.purpose,
        created_at=run.created_at,
        row_count=sum(r.row_count for r in reads),
        reads=[
            RunReadOut(dataset=r.dataset, version=r.version, row_count=r.row_count) for r in reads
        ],
    )


class RecipeOut(BaseModel):
    run_id: str
    principal_id: str
    recipe: dict[str, Any]
    superseded_by: str | None
    registered_by: str
    updated_at: datetime


def _recipe_out(info: RecipeInfo) -> RecipeOut:
    return RecipeOut(
        run_id=info.run_id,
        principal_id=info.principal_id,
        recipe=info.recipe.to_json(),
        superseded_by=info.superseded_by,
        registered_by=info.registered_by,
        updated_at=info.updated_at,
    )


@router.put("/{run_id}/recipe", response_model=RecipeOut)
def put_recipe(
    run_id: str, body: RecipeBody, gateway: GatewayDep, caller: CurrentCaller
) -> RecipeOut:
    """Register how the run was trained; the run's own principal (or an admin) only."""
    return _recipe_out(gateway.commands.put_recipe(caller, run_id, body))


@router.get("/{run_id}/recipe", response_model=RecipeOut)
def get_recipe(run_id: str, gateway: GatewayDep, caller: CurrentCaller) -> RecipeOut:
    return _recipe_out(gateway.queries.recipe(caller, run_id))
