"""The policy decision point: "may S do A on R for purpose P?" -> a Plan."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from govern.api.deps import BearerToken, GatewayDep
from govern.auth import Action, ensure_allowed
from govern.gateway import DecisionRequest, Gateway

router = APIRouter(prefix="/v1/decisions", tags=["decisions"])

Name = Annotated[str, Field(min_length=1, max_length=200)]


class SubjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Name
    role: str | None = Field(None, max_length=32)
    attributes: dict[str, Any] = Field(default_factory=dict, max_length=100)


class ResourceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: Name
    columns: list[Name] | None = Field(None, max_length=1000)


class ContextIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    purpose: str = Field(min_length=1, max_length=100)
    run_id: str | None = Field(None, max_length=200)


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: SubjectIn | None = None
    action: str = Field("read", min_length=1, max_length=32)
    resource: ResourceIn
    context: ContextIn


class PlanOut(BaseModel):
    decision: str
    row_filter: str | None
    columns: dict[str, str]
    obligations: list[str]
    policy_version: int | None
    reasons: list[str]
    log_index: int | None
    dataset: str
    dataset_version: int | None


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requests: list[DecisionIn] = Field(min_length=1, max_length=1000)


class BatchOut(BaseModel):
    plans: list[PlanOut]


def _request(body: DecisionIn) -> DecisionRequest:
    return DecisionRequest(
        dataset=body.resource.dataset,
        purpose=body.context.purpose,
        action=body.action,
        subject_id=body.subject.id if body.subject else None,
        role=body.subject.role if body.subject else None,
        columns=body.resource.columns,
        sent_attributes=body.subject.attributes if body.subject else None,
    )


# The hot path: async handlers that make one thread-pool call for all the blocking work (the
# token's check and the decision) and return the Plan's JSON directly (its shape is PlanOut,
# which documents it in OpenAPI); FastAPI would otherwise add a thread hop for the caller
# dependency, another for a sync handler, and one more to re-validate the response.
def _plans(gateway: Gateway, token: str, bodies: list[DecisionIn]) -> list[dict[str, Any]]:
    caller = gateway.decider.authenticate(token)
    ensure_allowed(caller.role, Action.DECIDE_SELF)
    return [p.to_json() for p in gateway.decider.decide_many(caller, [_request(b) for b in bodies])]


@router.post("", response_model=PlanOut)
async def decide(
    body: DecisionIn, gateway: GatewayDep, token: BearerToken, request: Request
) -> JSONResponse:
    (plan,) = await run_in_threadpool(_plans, gateway, token, [body])
    request.app.state.metrics.decisions.labels(plan["decision"]).inc()
    return JSONResponse(plan)


@router.post("/batch", response_model=BatchOut)
async def decide_batch(
    body: BatchIn, gateway: GatewayDep, token: BearerToken, request: Request
) -> JSONResponse:
    plans = await run_in_threadpool(_plans, gateway, token, body.requests)
    for plan in plans:
        request.app.state.metrics.decisions.labels(plan["decision"]).inc()
    return JSONResponse({"plans": plans})
