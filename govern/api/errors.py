"""The one REST error handler: every failure leaves as {"error", "message", "details"}."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from govern.errors import GovernError

__all__ = ["ERROR_RESPONSES", "ErrorOut", "error_response", "install_error_handlers"]

log = logging.getLogger("govern.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
}


class ErrorOut(BaseModel):
    """The one error shape, on every route and status."""

    error: str
    message: str
    details: Any = None


_WHY = {
    400: "malformed input",
    401: "no, bad, expired or revoked bearer token",
    403: "the role may not do this",
    404: "no such resource",
    409: "the resource is in a state that refuses this",
    413: "the body is over the configured cap",
    422: "well-formed but invalid input",
    503: "the store, the access log or another dependency is unavailable",
}
# Declared on every API route (FastAPI's own 422 shape is replaced: ours is ErrorOut too).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": why} for code, why in _WHY.items()
}


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": code, "message": message, "details": details}, status_code=status, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GovernError)
    async def _governed(_: Request, exc: GovernError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
        return error_response(exc.http_status, exc.code, exc.message, exc.details, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "type": e.get("type"),
                "message": e.get("msg"),
            }
            for e in exc.errors()
        ]
        if any(e["type"] == "json_invalid" for e in errors):
            return error_response(
                400, "malformed_json", "the request body is not valid JSON", errors
            )
        return error_response(422, "invalid", "the request does not match the schema", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        # Keep the exception's headers: a 405 names the methods that are allowed (RFC 9110).
        return error_response(exc.status_code, code, str(exc.detail), None, exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Never leak internals (str(exc) may hold SQL or paths); the log has the traceback.
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal", "internal error", None)
