"""Liveness, readiness and metrics; unauthenticated, for load balancers and scrapers."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from govern.api.deps import GatewayDep
from govern.api.errors import ErrorOut
from govern.errors import StoreUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"model": ErrorOut, "description": "the metadata store is unreachable"}},
)
def readyz(gateway: GatewayDep) -> dict[str, str]:
    try:
        gateway.queries.ping()
    except StoreUnavailable as exc:
        raise StoreUnavailable("not ready: the metadata store is unreachable") from exc
    return {"status": "ready"}


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> Response:
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
