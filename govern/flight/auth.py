"""Bearer-token authentication for every Flight call, as server middleware.

The client sends ``authorization: Bearer <token>`` as call metadata (gRPC header) on each call;
``start_call`` verifies it with the same function as REST (``Decider.authenticate``), before any
handler runs, and refuses the call with FlightUnauthenticatedError when it is missing, malformed,
forged, expired or revoked. Handlers read the verified Caller from the middleware, never from the
request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow.flight as flight

from govern.auth import Caller
from govern.errors import AuthError
from govern.flight.errors import flight_errors

__all__ = ["AUTH_MIDDLEWARE", "BearerAuthFactory", "CallerMiddleware", "caller_of"]

AUTH_MIDDLEWARE = "auth"
_MAX_TOKEN_CHARS = 8192


class CallerMiddleware(flight.ServerMiddleware):  # type: ignore[misc]
    def __init__(self, caller: Caller) -> None:
        super().__init__()
        self.caller = caller


class BearerAuthFactory(flight.ServerMiddlewareFactory):  # type: ignore[misc]
    def __init__(self, authenticate: Callable[[str], Caller]) -> None:
        super().__init__()
        self.authenticate = authenticate

    def start_call(self, info: Any, headers: dict[str, list[str]]) -> CallerMiddleware:
        with flight_errors():
            return CallerMiddleware(self.authenticate(_bearer(headers)))


def _bearer(headers: dict[str, list[str]]) -> str:
    values = headers.get("authorization") or []
    if not values:
        raise AuthError("a bearer token is required", details={"reason": "missing"})
    if len(values) > 1:
        raise AuthError("send one authorization header", details={"reason": "invalid"})
    value = values[0]
    value = value.decode() if isinstance(value, bytes) else value
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or len(token) > _MAX_TOKEN_CHARS:
        raise AuthError("a bearer token is required", details={"reason": "missing"})
    return token.strip()


def caller_of(context: flight.ServerCallContext) -> Caller:
    middleware = context.get_middleware(AUTH_MIDDLEWARE)
    if not isinstance(middleware, CallerMiddleware):
        # Unreachable while the factory is installed; refuse rather than serve anonymously.
        raise AuthError("the call was not authenticated", details={"reason": "missing"})
    return middleware.caller
