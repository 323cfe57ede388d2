"""The review queue: verdicts the pipeline could not settle, decided by a person."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from govern.api.deps import GatewayDep, require
from govern.auth import Action, Caller

router = APIRouter(prefix="/v1/reviews", tags=["compliance"])


class ReviewOut(BaseModel):
    id: str
    assessment_id: str
    rule: str
    state: str
    verdict: str | None
    note: str
    reviewer: str | None
    dataset: str | None
    purpose: str | None
    rationale: str
    created_at: str
    decided_at: str | None
    log_index: int | None


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Literal["compliant", "non_compliant"]
    note: str = Field("", max_length=4000)


Reader = Annotated[Caller, Depends(require(Action.COMPLIANCE_READ))]
Decider = Annotated[Caller, Depends(require(Action.REVIEWS_DECIDE))]


@router.get("", response_model=list[ReviewOut])
def queue(
    gateway: GatewayDep,
    _: Reader,
    state: Annotated[Literal["open", "decided", "all"], Query()] = "open",
) -> list[dict[str, Any]]:
    reviews = gateway.queries.reviews(None if state == "all" else state)
    return [r.to_json() for r in reviews]


@router.post("/{rid}", response_model=ReviewOut)
def decide(rid: str, body: DecisionIn, gateway: GatewayDep, caller: Decider) -> dict[str, Any]:
    return gateway.commands.decide_review(rid, body.verdict, body.note, caller.id).to_json()
