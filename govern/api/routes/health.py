"""Liveness, readiness and metrics; unauthenticated, for load balancers and scrapers."""

from __future__ import annotations

from typing import Any

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
def readyz(gateway: GatewayDep) -> dict[str, Any]:
    """Ready when the store answers. The language model's state is detail, not a condition:
    decisions never wait for it, and assessments that need it say so in their verdicts."""
    try:
        gateway.queries.ping()
    except StoreUnavailable as exc:
        raise StoreUnavailable("not ready: the metadata store is unreachable") from exc
    out: dict[str, Any] = {"status": "ready"}
    model = gateway.queries.model_status()
    if model is not None:
        out["language_model"] = model.to_json()
    return out


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> Response:
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
