"""Compliance checks: the legal rule library and assessments of a dataset's use."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from govern.api.deps import GatewayDep, require
from govern.auth import Action, Caller
from govern.errors import ValidationError

router = APIRouter(prefix="/v1/compliance", tags=["compliance"])

# A 100 kB description is fine; much more is not a description.
MAX_DESCRIPTION = 200_000


class RuleOut(BaseModel):
    id: str
    law: str
    article: str
    title: str
    text: str
    facts: list[str]
    applies_when: str
    non_compliant_when: list[dict[str, str]]
    compliant_when: list[dict[str, str]]


class AssessmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str | None = Field(None, min_length=1, max_length=63)
    purpose: str = Field(min_length=1, max_length=100)
    rules: list[Annotated[str, Field(max_length=100)]] | None = Field(None, max_length=200)
    facts: dict[str, Any] = Field(default_factory=dict, max_length=100)


class VerdictOut(BaseModel):
    rule: str
    verdict: str
    confidence: float
    rationale: str
    evidence: list[str]
    applicable: bool | None
    facts_used: list[str]
    # Which readers ran: "rules", "prose", "model:<name>", "model unavailable: <why>"
    # (empty on assessments stored before verdicts named them).
    readers: list[str] = Field(default_factory=list)
    review: dict[str, Any] | None


class AssessmentOut(BaseModel):
    id: str
    dataset: str | None
    purpose: str
    verdicts: list[VerdictOut]
    requested_by: str
    created_at: str
    log_index: int | None


RulesReader = Annotated[Caller, Depends(require(Action.COMPLIANCE_RULES_READ))]
Reader = Annotated[Caller, Depends(require(Action.COMPLIANCE_READ))]
Assessor = Annotated[Caller, Depends(require(Action.COMPLIANCE_ASSESS))]


@router.get("/rules", response_model=list[RuleOut])
async def rules(gateway: GatewayDep, _: RulesReader) -> list[dict[str, Any]]:
    return [r.to_json() for r in gateway.queries.rules()]


@router.post("/assessments", response_model=AssessmentOut, status_code=201)
def assess(body: AssessmentIn, gateway: GatewayDep, caller: Assessor) -> dict[str, Any]:
    description = body.facts.get("description")
    if isinstance(description, str) and len(description) > MAX_DESCRIPTION:
        raise ValidationError(
            f"facts.description is longer than {MAX_DESCRIPTION} characters",
            details={"length": len(description), "max": MAX_DESCRIPTION},
        )
    info = gateway.commands.assess(body.dataset, body.purpose, body.rules, body.facts, caller.id)
    return info.to_json()


@router.get("/assessments/{aid}", response_model=AssessmentOut)
def get(aid: str, gateway: GatewayDep, _: Reader) -> dict[str, Any]:
    return gateway.queries.assessment(aid).to_json()
