"""The policy set in force: read it, replace it atomically, simulate a replacement."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from govern.api.deps import GatewayDep, require
from govern.auth import Action, Caller

router = APIRouter(prefix="/v1/policies", tags=["policies"])


class PolicySetOut(BaseModel):
    version: int | None
    model: str
    rules: list[list[str]]


class PolicySetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[list[str]] = Field(max_length=100_000)
    model: str | None = Field(None, max_length=100_000)


class SimulateIn(PolicySetIn):
    purposes: list[str] | None = Field(None, max_length=50)


class VersionOut(BaseModel):
    version: int


class SimulateOut(BaseModel):
    current_version: int | None
    changes: list[dict[str, Any]]


Reader = Annotated[Caller, Depends(require(Action.POLICIES_READ))]
Writer = Annotated[Caller, Depends(require(Action.POLICIES_WRITE))]


@router.get("", response_model=PolicySetOut)
def get_policies(gateway: GatewayDep, _: Reader) -> PolicySetOut:
    p = gateway.queries.policy()
    return PolicySetOut(version=p.version, model=p.model_text, rules=[list(r) for r in p.rules])


@router.put("", response_model=VersionOut)
def put_policies(body: PolicySetIn, gateway: GatewayDep, caller: Writer) -> VersionOut:
    return VersionOut(version=gateway.commands.put_policy(body.model, body.rules, caller.id))


@router.post("/simulate", response_model=SimulateOut)
def simulate_policies(body: SimulateIn, gateway: GatewayDep, _: Writer) -> SimulateOut:
    version, changes = gateway.queries.simulate_policy(body.model, body.rules, body.purposes)
    return SimulateOut(current_version=version, changes=[c.to_json() for c in changes])
