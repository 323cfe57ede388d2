"""FastAPI dependencies as Annotated aliases: the gateway, the authenticated caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from govern.auth import Action, Caller, ensure_allowed
from govern.errors import AuthError
from govern.gateway import Gateway

__all__ = ["CurrentCaller", "GatewayDep", "require"]

_bearer = HTTPBearer(auto_error=False)


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def get_caller(
    gateway: GatewayDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthError("a bearer token is required", details={"reason": "missing"})
    return gateway.tokens.verify(credentials.credentials)


CurrentCaller = Annotated[Caller, Depends(get_caller)]


def require(action: Action) -> Callable[[Caller], Caller]:
    """A dependency that authenticates and checks the caller's role may perform ``action``."""

    def check(caller: CurrentCaller) -> Caller:
        ensure_allowed(caller.role, action)
        return caller

    return check
