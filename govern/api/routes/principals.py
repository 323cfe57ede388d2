"""Principals and their tokens (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from govern.api.deps import CurrentCaller, GatewayDep, require
from govern.auth import Action, Caller, PrincipalRecord

router = APIRouter(prefix="/v1", tags=["principals"])


class PrincipalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roles: list[str] = Field(min_length=1, max_length=5)
    attributes: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=100)
    display_name: str = Field("", max_length=200)


class PrincipalOut(BaseModel):
    id: str
    roles: list[str]
    attributes: dict[str, Any]
    display_name: str
    disabled: bool

    @classmethod
    def of(cls, p: PrincipalRecord) -> PrincipalOut:
        return cls(
            id=p.id,
            roles=list(p.roles),
            attributes=dict(p.attributes),
            display_name=p.display_name,
            disabled=p.disabled,
        )


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: str = Field(max_length=200)
    role: str = Field(max_length=32)
    ttl_seconds: int | None = Field(None, gt=0, le=90 * 24 * 3600)


class TokenOut(BaseModel):
    token: str


Admin = Annotated[Caller, Depends(require(Action.PRINCIPALS_WRITE))]
PrincipalReader = Annotated[Caller, Depends(require(Action.PRINCIPALS_READ))]
TokenWriter = Annotated[Caller, Depends(require(Action.TOKENS_WRITE))]


@router.get("/whoami", response_model=PrincipalOut)
def whoami(caller: CurrentCaller) -> PrincipalOut:
    return PrincipalOut.of(caller.principal)


@router.get("/principals", response_model=list[PrincipalOut])
def list_principals(gateway: GatewayDep, _: PrincipalReader) -> list[PrincipalOut]:
    return [PrincipalOut.of(p) for p in gateway.queries.principals()]


@router.put("/principals/{pid}", response_model=PrincipalOut)
def put_principal(pid: str, body: PrincipalIn, gateway: GatewayDep, caller: Admin) -> PrincipalOut:
    record = gateway.commands.put_principal(
        pid, body.roles, body.attributes, caller.id, display_name=body.display_name
    )
    return PrincipalOut.of(record)


@router.delete("/principals/{pid}", status_code=204)
def disable_principal(pid: str, gateway: GatewayDep, caller: Admin) -> None:
    """Disable a principal (kept for the record): every token it holds stops working."""
    gateway.commands.disable_principal(pid, caller.id)


@router.post("/tokens", response_model=TokenOut, status_code=201)
def create_token(body: TokenIn, gateway: GatewayDep, caller: TokenWriter) -> TokenOut:
    issued = gateway.commands.issue_token(body.subject, body.role, caller.id, body.ttl_seconds)
    return TokenOut(token=issued.token)


@router.delete("/tokens/{jti}", status_code=204)
def revoke_token(jti: str, gateway: GatewayDep, caller: TokenWriter) -> None:
    gateway.commands.revoke_token(jti, caller.id)
