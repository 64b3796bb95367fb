"""Prometheus metrics of one app: requests and latency per route, model encode time, the served index.

One app is one process: with Ray Serve replicas (search/serve/replicas.py), each replica counts its own requests,
and a scrape of `/metrics` is answered by one of them, named in `search_replica` (and the X-Search-Replica header).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from starlette.requests import Request
from starlette.responses import Response

# Seconds: a cached lexical search takes about a millisecond, a batch of 256 on two cores several seconds.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _HasHealth(Protocol):
    def health(self) -> dict[str, Any]: ...


class Metrics:
    """The app's metrics, in a registry of its own: two apps in one process (as in tests) never share counts."""

    def __init__(self, replica: str = "local") -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "search_http_requests", "HTTP requests by method, route template and status", ["method", "route", "status"],
            registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "search_http_request_duration_seconds", "time to the last byte of the response, by route template",
            ["method", "route"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.in_flight = Gauge("search_http_requests_in_flight", "requests being served now", registry=r)
        self.encode = Histogram(
            "search_encode_duration_seconds", "model calls that encode queries or passages, by kind", ["kind"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.encoded = Counter("search_encoded_texts", "texts sent to the model, by kind", ["kind"], registry=r)
        self.index_size = Gauge("search_index_passages", "passages in the served index", registry=r)
        self.build = Info("search_index_build", "the served index build", registry=r)
        Info("search_replica", "the process that answered this scrape", registry=r).info({"replica": replica})

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_encode(self, kind: str, texts: int, seconds: float) -> None:
        """The hook for the service: one model call that encoded `texts` texts of `kind` (query or passage)."""
        self.encode.labels(kind).observe(seconds)
        self.encoded.labels(kind).inc(texts)

    def set_index(self, passages: int, build_id: str, model: str | None = None) -> None:
        self.index_size.set(passages)
        self.build.info({"build_id": build_id, "model": model or ""})

    def render(self) -> bytes:
        return generate_latest(self.registry)


def metrics_endpoint(metrics: Metrics) -> Callable[[Request], Awaitable[Response]]:
    """`GET /metrics` in the Prometheus text format; the index gauges are read from the service at scrape time.

    Async on purpose: a scrape must not wait for a thread of a pool that searches have saturated.
    """

    async def prometheus_metrics(request: Request) -> Response:
        service: _HasHealth | None = getattr(request.app.state, "service", None)
        if service is not None:
            health = service.health()
            metrics.set_index(int(health.get("index_size", 0)), str(health.get("build_id", "")), health.get("model"))
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return prometheus_metrics
