"""Prometheus metrics for the REST API, on a registry owned by the app (tests build many apps)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from govern.compliance import ModelStatus
from govern.errors import GovernError
from govern.ledger.anchor import AnchorStatus

__all__ = ["AnchorCollector", "ApiMetrics", "MetricsMiddleware", "ModelCollector"]

log = logging.getLogger("govern.api")


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "govern_http_requests_total",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "govern_http_request_seconds",
            "HTTP request latency by route.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.decisions = Counter(
            "govern_decisions_total",
            "Policy decisions by outcome.",
            ["decision"],
            registry=self.registry,
        )


class AnchorCollector(Collector):
    """Anchoring lag, read from the anchorer at scrape time so it keeps growing while the
    anchorer itself is stuck waiting on a chain that is down."""

    def __init__(self, status: Callable[[], AnchorStatus | None]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        try:
            st = self._status()
        except GovernError as exc:  # the store is down: no numbers rather than a failed scrape
            log.warning("anchor metrics unavailable: %s", exc.message)
            return
        if st is None:  # anchoring is off in this process
            return
        gauges = [
            ("govern_ledger_tree_size", "Entries in the access log.", st.tree_size),
            (
                "govern_ledger_anchored_tree_size",
                "Largest tree size anchored on a chain.",
                st.anchored_size,
            ),
            (
                "govern_ledger_anchor_lag_entries",
                "Entries appended but not yet anchored on the chain.",
                st.lag_entries,
            ),
            (
                "govern_ledger_anchor_lag_seconds",
                "Age of the oldest entry not yet anchored on the chain (0 when none).",
                st.lag_seconds,
            ),
            (
                "govern_ledger_anchor_retry_in_seconds",
                "Seconds until the next attempt while backing off (0 when not).",
                st.retry_in_seconds,
            ),
        ]
        if st.chain_up is not None:  # absent until the first attempt, rather than a false 0
            gauges.append(
                (
                    "govern_ledger_anchor_chain_up",
                    "1 if the last anchoring attempt reached the chain, 0 if it failed.",
                    1 if st.chain_up else 0,
                )
            )
        for name, doc, value in gauges:
            yield GaugeMetricFamily(name, doc, value=value)
        yield CounterMetricFamily(
            "govern_ledger_anchors", "Anchors written by this process.", value=st.anchors
        )
        yield CounterMetricFamily(
            "govern_ledger_anchor_failures",
            "Failed anchoring attempts in this process.",
            value=st.failures,
        )


MODEL_STATES = ("idle", "converting", "loading", "ready", "failed", "unavailable", "none")


class ModelCollector(Collector):
    """The compliance language model's readiness, read at scrape time."""

    def __init__(self, status: Callable[[], ModelStatus | None]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        st = self._status()
        if st is None:
            return
        yield GaugeMetricFamily(
            "govern_language_model_ready",
            "1 when the compliance language model answers, 0 while it loads or is down.",
            value=1 if st.ready else 0,
        )
        states = GaugeMetricFamily(
            "govern_language_model_state",
            "1 for the language model's current state (idle, converting, loading, ready, "
            "failed, unavailable, none), 0 for the others.",
            labels=["backend", "state"],
        )
        for state in (*MODEL_STATES, *([st.state] if st.state not in MODEL_STATES else [])):
            states.add_metric([st.backend, state], 1 if state == st.state else 0)
        yield states


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            # The route template, not the raw path, keeps label cardinality bounded.
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - start)
