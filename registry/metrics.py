"""Prometheus metrics: ``GET /metrics``, fed by a pure ASGI middleware and read from the database.

Every app has its own `CollectorRegistry` (never prometheus_client's global one), so apps built side by
side (tests, several registries in one process) count apart. Requests are labelled by their route
*template* (``/v1/projects/{project_id}``), never the raw path, so the label set stays small; a request
no route matched counts under ``unmatched``.

The write path's fate is read from ``POST /v1/transactions`` responses as they pass: 201 is an
appended transaction (its kind from the receipt's outcome), 200 a re-sent one answered with the original
receipt, and a 4xx problem a refusal (its code: the problem type's last segment, the rule's code such as
``insufficient_units``, or ``malformed-json``, ``content-too-large``...).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any, TypeVar, cast

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.errors import StorageError
from ledger.storage import store
from ledger.storage.engine import read_transaction
from registry.access_log import route_template
from registry.errors import PROBLEM_TYPE_BASE
from registry.transactions import api as transactions_api

UNMATCHED = "unmatched"
_Metric = TypeVar("_Metric", bound=MetricWrapperBase)


class LedgerCollector:
    """The log's size and the latest checkpoint's size, read from the database at each scrape.

    Every server process reads the same database, so these agree across processes. When the database
    cannot be read, the scrape still answers (its counters matter most then), with ``cdcer_database_up 0``.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        up, log_size, checkpoint_size = self._families()
        try:
            with read_transaction(self.engine) as conn:
                size = store.log_size(conn)
                latest = store.latest_checkpoint(conn)
        except StorageError:
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        log_size.add_metric([], size)
        checkpoint_size.add_metric([], 0 if latest is None else latest.size)
        return [up, log_size, checkpoint_size]

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily("cdcer_database_up", "1 if this scrape could read the database, else 0"),
            GaugeMetricFamily("cdcer_log_size", "Entries in the log"),
            GaugeMetricFamily(
                "cdcer_checkpoint_size", "Tree size of the latest signed checkpoint (0 before the first)"
            ),
        )


class Metrics:
    """One app's metrics and the registry that exposes them."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cdcer_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "cdcer_http_request_duration_seconds",
            "Time from receiving a request to sending the last byte of its response, by route template",
            ["route"],
            registry=self.registry,
        )
        self.appended = Counter(
            "cdcer_transactions_appended",
            "Transactions appended to the log, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "cdcer_transactions_duplicate",
            "Transactions re-sent identically, answered with the original receipt (nothing appended)",
            registry=self.registry,
        )
        self.refused = Counter(
            "cdcer_transactions_refused",
            "Transactions refused, by code (the rule broken, or why the request was not a transaction)",
            ["code"],
            registry=self.registry,
        )
        self.registry.register(LedgerCollector(engine))
        self._children: dict[tuple[object, ...], MetricWrapperBase] = {}

    def appended_counter(self, kind: str) -> Counter:
        """The appended transactions counter's child for this kind."""
        return self._labelled(self.appended, kind=kind)

    def request_counter(self, method: str, route: str, status: int) -> Counter:
        """The requests counter's child for these labels."""
        return self._labelled(self.requests, method=method, route=route, status=str(status))

    def duration_histogram(self, route: str) -> Histogram:
        """The request duration histogram's child for this route."""
        return self._labelled(self.duration, route=route)

    def _labelled(self, metric: _Metric, **labels: str) -> _Metric:
        """`metric.labels(**labels)`, looked up once per label set (prometheus_client checks and locks)."""
        key = (metric, *labels.values())
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(**labels)
        return cast(_Metric, child)

    def count_transaction(self, status: int, body: bytes, *, kind: str | None = None) -> None:
        """Count the fate of one ``POST /v1/transactions`` from its response (`kind`: an appended
        transaction's, when the route said so; else read from the receipt)."""
        if status not in (200, 201) and not 400 <= status < 500:
            return  # 5xx: the registry failed; the request counter shows it
        if status == 201 and kind is not None:
            self.appended_counter(kind).inc()
            return
        try:
            answer: Any = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        if status == 201:
            outcome = answer.get("outcome")
            kind = outcome.get("kind") if isinstance(outcome, dict) else None
            self.appended_counter(str(kind or "unknown")).inc()
        elif status == 200:
            self.duplicates.inc()
        else:
            problem_type = str(answer.get("type", ""))
            code = problem_type.removeprefix(PROBLEM_TYPE_BASE) if problem_type.startswith(PROBLEM_TYPE_BASE) else ""
            self.refused.labels(code=code or "unknown").inc()


class MetricsMiddleware:
    """Counts and times every HTTP request, and the fate of every transaction posted."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        clock = time.perf_counter()
        status = 500  # an exception escaping the app is answered 500 by Starlette's outermost middleware
        receipt: bytearray | None = None  # the response body, kept only for the transactions route

        async def send_and_watch(message: Message) -> None:
            nonlocal status, receipt
            if message["type"] == "http.response.start":
                status = message["status"]
                if _is_transaction_post(scope):
                    receipt = bytearray()
            elif message["type"] == "http.response.body" and receipt is not None:
                receipt += message.get("body", b"")
                if not message.get("more_body", False):
                    kind = scope.get("state", {}).get(transactions_api.APPENDED_KIND)
                    self.metrics.count_transaction(status, bytes(receipt), kind=kind)
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            route = route_template(scope) or UNMATCHED
            self.metrics.request_counter(scope["method"], route, status).inc()
            self.metrics.duration_histogram(route).observe(time.perf_counter() - clock)


def _is_transaction_post(scope: Scope) -> bool:
    route = scope.get("route")
    return scope["method"] == "POST" and getattr(route, "endpoint", None) is transactions_api.post_transaction


router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description=(
        "Prometheus text exposition format (OpenMetrics when the `Accept` header asks for it): HTTP "
        "requests by method, route template and status; request durations by route; transactions "
        "appended (by kind), re-sent and refused (by code); the log size and the latest checkpoint size. "
        "Counters and histograms are per server process: under `cdcer serve --workers N` each process "
        "counts the requests it served, so scrape every process (or sum across them). The log and "
        "checkpoint sizes are read from the database at each scrape and agree across processes."
    ),
    response_class=Response,
    responses={200: {"description": "The metrics", "content": {"text/plain": {}}}},
)
def get_metrics(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    encode, media_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(metrics.registry), media_type=media_type)
