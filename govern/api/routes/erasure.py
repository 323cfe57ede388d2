"""Erasure requests: withdraw a data subject's rows at once, and see which runs read them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from govern.api.deps import GatewayDep, require
from govern.auth import Action, Caller
from govern.gateway.queries import ErasureView

router = APIRouter(prefix="/v1/erasure-requests", tags=["erasure"])


class ErasureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject_id: str = Field(min_length=1, max_length=200)
    datasets: list[Annotated[str, Field(max_length=63)]] | None = Field(None, max_length=1000)
    legal_basis: str = Field(min_length=1, max_length=200)


class ErasureOut(BaseModel):
    id: str
    state: str
    # In clear while the request has work left; null once it completed (the commitment stays).
    subject_id: str | None
    subject_commitment: str
    datasets: list[str] | None
    legal_basis: str
    excluded_rows: int
    affected_runs: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    message: str = ""
    # Removal of the rows from the data files: pending | done | failed, and per version.
    rewrite: str = "pending"
    rewrite_versions: list[dict[str, Any]] = []


Writer = Annotated[Caller, Depends(require(Action.ERASURE_WRITE))]
Reader = Annotated[Caller, Depends(require(Action.ERASURE_READ))]


def _out(view: ErasureView) -> ErasureOut:
    info, runs, plan, rewrite = view.info, view.affected_runs, view.plan, view.rewrite
    return ErasureOut(
        id=info.id,
        state=info.state,
        subject_id=info.subject_id,
        subject_commitment=info.subject_commitment,
        datasets=list(info.datasets) if info.datasets else None,
        legal_basis=info.legal_basis,
        excluded_rows=info.excluded_rows,
        affected_runs=[
            {
                "run_id": r.run.id,
                "principal": r.run.principal_id,
                "reads": [
                    {"dataset": x.dataset, "version": x.version, "rows": x.rows} for x in r.reads
                ],
                # retrain | unlearn | none, and why (e.g. "no recipe: cannot retrain").
                "unlearning": a.to_json() if (a := plan.action_for(r.run.id)) else None,
            }
            for r in runs
        ],
        jobs=[j.to_json() for j in view.jobs],
        message=info.message,
        rewrite=rewrite.state,
        rewrite_versions=[v.to_json() for v in rewrite.versions],
    )


@router.post(
    "",
    response_model=ErasureOut,
    status_code=202,
    responses={200: {"model": ErasureOut, "description": "the same request again: nothing new"}},
)
def create(body: ErasureIn, gateway: GatewayDep, caller: Writer, response: Response) -> ErasureOut:
    info = gateway.commands.request_erasure(
        body.subject_id, body.datasets, body.legal_basis, caller.id
    )
    if not info.created:
        response.status_code = 200  # the same request again: idempotent
    return _out(gateway.queries.erasure_request(info.id))


@router.get("/{rid}", response_model=ErasureOut)
def get(rid: str, gateway: GatewayDep, _: Reader) -> ErasureOut:
    return _out(gateway.queries.erasure_request(rid))
