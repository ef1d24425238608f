"""Prometheus metrics of the central API, at `GET /metrics` (for the internal network).

What is counted, and where it is taken from, so that no route or service
carries metrics code:

- HTTP requests by method, route template and status, and their duration:
  an ASGI middleware. Paths that match no route count as `route="unmatched"`.
- Uplink records by outcome (applied, duplicate, rejected by code): from the
  uplink answer itself, the contract's account of every record.
- Commands enqueued and their results, and the latency from created to
  result; sessions opened and closed: from the rows written, by SQLAlchemy
  session events, counted only once their transaction has committed.
- Gauges that must agree across workers (sheds online, open sessions,
  commands waiting for a result) are read from the database at scrape time.

Several uvicorn workers: set `PROMETHEUS_MULTIPROC_DIR` to an empty directory
before starting them (prometheus_client's multiprocess mode); every worker's
counters and histograms are then summed on each scrape, whichever worker
answers it. Without it each worker reports its own (docs/telemetry.md).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import event, func, inspect, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.context import AppContext
from api.models import ChargeSession, Command, Shed

UPLINK_ROUTE = "/api/v1/sheds/{shed_id}/uplink"
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
COMMAND_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
_PENDING = "ebshed_metrics_pending"  # Session.info key: what to count once committed


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ApiMetrics:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "ebshed_api_http_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "ebshed_api_http_request_duration_seconds",
            "Time to answer, by method and route template (long polls included).",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.uplink_records = Counter(
            "ebshed_api_uplink_records",
            "Uplink records by outcome: applied, duplicate, rejected.",
            ["outcome"],
            registry=r,
        )
        self.uplink_rejections = Counter(
            "ebshed_api_uplink_rejections", "Rejected uplink records by code.", ["code"], registry=r
        )
        self.commands_enqueued = Counter(
            "ebshed_api_commands_enqueued",
            "Commands queued for sheds, by kind.",
            ["kind"],
            registry=r,
        )
        self.command_results = Counter(
            "ebshed_api_command_results",
            "Command results reported by sheds, by kind and ok.",
            ["kind", "ok"],
            registry=r,
        )
        self.command_latency = Histogram(
            "ebshed_api_command_latency_seconds",
            "From a command's creation to its result (the API's clock).",
            ["kind"],
            buckets=COMMAND_BUCKETS,
            registry=r,
        )
        self.sessions_opened = Counter(
            "ebshed_api_sessions_opened", "Charging sessions first reported.", registry=r
        )
        self.sessions_closed = Counter(
            "ebshed_api_sessions_closed", "Charging sessions reported closed.", registry=r
        )
        r.register(_DatabaseGauges(ctx))

    # ---- exposition -----------------------------------------------------------

    def render(self) -> bytes:
        if multiprocess_dir() is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped in the library
        registry.register(_DatabaseGauges(self.ctx))
        return generate_latest(registry)

    # ---- what happened ----------------------------------------------------------

    def http(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_seconds.labels(method, route).observe(seconds)

    def uplink_answer(self, body: bytes) -> None:
        try:
            answer = json.loads(body)
            applied, duplicates = answer["applied"], answer["duplicates"]
            rejected = answer["rejected"]
        except (ValueError, KeyError, TypeError):
            return
        self.uplink_records.labels("applied").inc(len(applied))
        self.uplink_records.labels("duplicate").inc(len(duplicates))
        self.uplink_records.labels("rejected").inc(len(rejected))
        for r in rejected:
            self.uplink_rejections.labels(str(r.get("code"))).inc()

    def watch(self, sessions: sessionmaker[Session]) -> None:
        """Count commands and sessions from the rows every transaction commits."""
        event.listen(sessions, "after_flush", self._after_flush)
        event.listen(sessions, "after_commit", self._after_commit)
        event.listen(sessions, "after_rollback", self._after_rollback)

    def _after_flush(self, db: Session, _context: Any) -> None:
        pending: list[tuple[str, tuple[Any, ...]]] = db.info.setdefault(_PENDING, [])
        for obj in db.new:
            if isinstance(obj, Command):
                pending.append(("enqueued", (obj.kind,)))
            elif isinstance(obj, ChargeSession):
                pending.append(("opened", ()))
                if obj.ended_ms is not None:
                    pending.append(("closed", ()))
        for obj in db.dirty:
            if isinstance(obj, Command) and _newly_set(obj, "result_ms"):
                seconds = max(0, (obj.result_ms or 0) - obj.created_ms) / 1000
                pending.append(("result", (obj.kind, bool(obj.result_ok), seconds)))
            elif isinstance(obj, ChargeSession) and _newly_set(obj, "ended_ms"):
                pending.append(("closed", ()))

    def _after_commit(self, db: Session) -> None:
        for what, args in db.info.pop(_PENDING, []):
            if what == "enqueued":
                self.commands_enqueued.labels(args[0]).inc()
            elif what == "result":
                kind, ok, seconds = args
                self.command_results.labels(kind, "true" if ok else "false").inc()
                self.command_latency.labels(kind).observe(seconds)
            elif what == "opened":
                self.sessions_opened.inc()
            else:
                self.sessions_closed.inc()

    def _after_rollback(self, db: Session) -> None:
        db.info.pop(_PENDING, None)


def count_sessions(db: Session, *, opened: int, closed: int) -> None:
    """Sessions written without the ORM (the uplink's set-based batches), counted
    when the transaction commits, like those the ORM flushes."""
    pending: list[tuple[str, tuple[Any, ...]]] = db.info.setdefault(_PENDING, [])
    pending.extend([("opened", ())] * opened + [("closed", ())] * closed)


def _newly_set(obj: Any, attr: str) -> bool:
    """The attribute went from NULL to a value in this flush."""
    history = inspect(obj).attrs[attr].history
    return (
        bool(history.added)
        and history.added[0] is not None
        and not any(v is not None for v in history.deleted)
    )


class _DatabaseGauges:
    """Gauges every worker reads alike, from the database, at scrape time."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        ctx = self.ctx
        online_since = ctx.now_ms() - ctx.settings.shed_offline_after_s * 1000
        with ctx.sessions() as db:
            sheds = db.scalar(select(func.count()).select_from(Shed)) or 0
            online = (
                db.scalar(
                    select(func.count()).select_from(Shed).where(Shed.last_seen_ms >= online_since)
                )
                or 0
            )
            open_sessions = (
                db.scalar(
                    select(func.count())
                    .select_from(ChargeSession)
                    .where(ChargeSession.ended_ms.is_(None))
                )
                or 0
            )
            waiting = (
                db.scalar(
                    select(func.count()).select_from(Command).where(Command.result_ms.is_(None))
                )
                or 0
            )
        family = GaugeMetricFamily(
            "ebshed_api_sheds", "Registered sheds by state.", labels=["state"]
        )
        family.add_metric(["online"], online)
        family.add_metric(["offline"], sheds - online)
        yield family
        yield GaugeMetricFamily(
            "ebshed_api_sessions_open",
            "Charging sessions open, as the sheds reported.",
            open_sessions,
        )
        yield GaugeMetricFamily(
            "ebshed_api_commands_waiting", "Commands without a result yet.", waiting
        )


class HttpMetricsMiddleware:
    """Counts every HTTP request by route template; reads the uplink answers."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        body: list[bytes] | None = None

        async def sending(message: Message) -> None:
            nonlocal status, body
            if message["type"] == "http.response.start":
                status = message["status"]
                if status == 200 and route_template(scope) == UPLINK_ROUTE:
                    body = []
            elif message["type"] == "http.response.body" and body is not None:
                body.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = route_template(scope)
            self.metrics.http(scope["method"], route, status, time.perf_counter() - started)
            if body is not None:
                self.metrics.uplink_answer(b"".join(body))


def route_template(scope: Scope) -> str:
    """The matched route's full path template (`/api/v1/sheds/{shed_id}/uplink`), or
    "unmatched": never the raw path, so labels stay few.

    A route in an included router may know only its own part of the path; the
    prefix is then the part of the request path in front of it.
    """
    template = getattr(scope.get("route"), "path", None)
    if not isinstance(template, str) or not template:
        return "unmatched"
    if ":path}" in template:  # a tail of any length: no prefix to find
        return template
    segments = scope["path"].rstrip("/").split("/")  # "/api/v1/x" -> ["", "api", "v1", "x"]
    keep = max(0, len(segments) - template.rstrip("/").count("/"))
    return "/".join(segments[:keep]) + template


def install_metrics(app: FastAPI, ctx: AppContext) -> ApiMetrics:
    """Count requests, commands and sessions of this app; serve `GET /metrics`."""
    metrics = ApiMetrics(ctx)
    metrics.watch(ctx.sessions)
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        """Prometheus text format. No authentication: expose on the internal network only."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return metrics
