"""FastAPI dependencies as Annotated aliases: the gateway, the authenticated caller."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from govern.auth import Action, Caller, ensure_allowed
from govern.errors import AuthError
from govern.gateway import Gateway

__all__ = ["BearerToken", "CurrentCaller", "GatewayDep", "require"]

_bearer = HTTPBearer(auto_error=False)


# Trivial dependencies are async so they run on the event loop: FastAPI sends every sync
# dependency through the thread pool, and each hop cost about half a millisecond.
async def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


async def get_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The bearer token, not yet verified (for a handler that verifies it in its own thread-pool
    call, together with its work)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthError("a bearer token is required", details={"reason": "missing"})
    return credentials.credentials


BearerToken = Annotated[str, Depends(get_token)]


async def get_caller(gateway: GatewayDep, token: BearerToken) -> Caller:
    # The store lookup blocks, so it runs in the thread pool, in one hop.
    return await run_in_threadpool(gateway.decider.authenticate, token)


CurrentCaller = Annotated[Caller, Depends(get_caller)]


def require(action: Action) -> Callable[[Caller], Coroutine[Any, Any, Caller]]:
    """A dependency that authenticates and checks the caller's role may perform ``action``."""

    async def check(caller: CurrentCaller) -> Caller:
        ensure_allowed(caller.role, action)
        return caller

    return check
