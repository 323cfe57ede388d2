"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from govern import __version__
from govern.api.errors import ERROR_RESPONSES, install_error_handlers
from govern.api.limits import BodyLimit
from govern.api.metrics import AnchorCollector, ApiMetrics, MetricsMiddleware, ModelCollector
from govern.api.routes import (
    compliance,
    datasets,
    decisions,
    erasure,
    health,
    jobs,
    ledger,
    policies,
    principals,
    reviews,
    runs,
)
from govern.console import mount_console
from govern.gateway import Gateway

__all__ = ["UPLOAD_PATHS", "create_app"]

# Routes that take file uploads get the larger body cap.
UPLOAD_PATHS = ("/v1/datasets",)


def create_app(gateway: Gateway, *, close_on_shutdown: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if close_on_shutdown:
            gateway.close()

    app = FastAPI(
        title="govern",
        version=__version__,
        description="Data-governance gateway for ML training data.",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.state.metrics = ApiMetrics()
    app.state.metrics.registry.register(AnchorCollector(gateway.queries.anchor_status))
    app.state.metrics.registry.register(ModelCollector(gateway.queries.model_status))
    install_error_handlers(app)
    app.include_router(health.router)
    for module in (
        datasets,
        decisions,
        erasure,
        ledger,
        policies,
        principals,
        runs,
        compliance,
        reviews,
        jobs,
    ):
        app.include_router(module.router, responses=ERROR_RESPONSES)
    mount_console(app)
    app.add_middleware(
        BodyLimit,
        max_bytes=gateway.settings.max_body_bytes,
        upload_max_bytes=gateway.settings.max_upload_bytes,
        upload_paths=UPLOAD_PATHS,
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
