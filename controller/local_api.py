"""The controller's local operator API (HTTP on the shed's own box).

Used by `ebshed port start|stop` and by installers on site. It binds to
127.0.0.1 by default. Errors are problem responses with a stable `code`.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from controller.core.model import Authorization, Refusal
from controller.metrics import ControllerMetrics
from controller.service import ControllerService
from controller.uplink_records import session_data


class StartRequest(BaseModel):
    kind: Literal["order", "card", "plan"] = "order"
    ref: str | None = Field(None, max_length=64)
    prepaid_fen: int | None = Field(None, ge=1, le=100_000)
    mode: Literal["until_full", "amount"] = "until_full"


class StopRequest(BaseModel):
    reason: str = Field("operator", max_length=32)


class DisableRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=128)


class AckRequest(BaseModel):
    by: str = Field(min_length=1, max_length=64)
    note: str = Field("", max_length=512)


def _refused(refusal: Refusal, status: int = 409) -> HTTPException:
    return HTTPException(status, {"code": refusal.code, "message": refusal.message})


def make_app(service: ControllerService) -> FastAPI:
    """Every handler is `async def`: it runs on the controller's event loop, like
    the bridge and the timers, never in a worker thread beside them."""
    app = FastAPI(title="ebshed controller (local)", version="1")
    core = service.core

    def port_or_404(port: int) -> None:
        if port not in core.ports:
            raise HTTPException(404, {"code": "unknown_port", "message": f"no socket {port}"})

    @app.get("/status")
    async def status() -> dict[str, Any]:
        return {
            "shed": core.layout.shed_id,
            "now_ms": service.clock.now_ms(),
            "power_w": round(core.shed_power_w(), 1),
            "free_sockets": core.free_sockets(),
            "free_bays": core.free_bays(),
            "store": dataclasses.asdict(service.store_health),
            "ports": [
                {
                    "port": p.number,
                    "board": p.board,
                    "state": p.state.value,
                    "w": p.w,
                    "temp_c": p.temp_c,
                    "session": p.session.id if p.session else None,
                    "session_wh": p.session.energy_wh if p.session else 0,
                }
                for p in core.ports.values()
            ],
            "bays": [
                {"bay": b.number, "port": b.port, "occupied": b.occupied}
                for b in core.bays.values()
            ],
            "alarms": [
                {
                    "id": a.id,
                    "kind": a.kind,
                    "detail": a.detail,
                    "active": a.active,
                    "raised_ms": a.raised_ms,
                    "acked_by": a.acked_by,
                }
                for a in core.alarms.values()
            ],
            "counters": {
                "samples": core.counters.samples,
                "discarded": core.counters.discarded,
                "refusals": core.counters.refusals,
            },
        }

    @app.post("/ports/{port}/start", status_code=201)
    async def start(port: int, req: StartRequest) -> dict[str, Any]:
        port_or_404(port)
        if req.kind != "plan" and req.prepaid_fen is None:
            raise HTTPException(
                422, {"code": "prepaid_required", "message": "orders and cards need prepaid_fen"}
            )
        ref = req.ref or f"local-{uuid.uuid4().hex[:12]}"
        result = service.start_session(
            port, Authorization(req.kind, ref, req.prepaid_fen, req.mode)
        )
        if isinstance(result, Refusal):
            raise _refused(result)
        return session_data(result)

    @app.post("/ports/{port}/stop")
    async def stop(port: int, req: StopRequest | None = None) -> dict[str, Any]:
        port_or_404(port)
        refusal = service.stop_session(port, req.reason if req else "operator")
        if refusal is not None:
            raise _refused(refusal)
        return {"port": port, "stopping": True}

    @app.post("/ports/{port}/disable")
    async def disable(port: int, req: DisableRequest) -> dict[str, Any]:
        port_or_404(port)
        if (refusal := service.disable(port, req.reason)) is not None:
            raise _refused(refusal)
        return {"port": port, "state": core.ports[port].state.value}

    @app.post("/ports/{port}/enable")
    async def enable(port: int) -> dict[str, Any]:
        port_or_404(port)
        if (refusal := service.enable(port)) is not None:
            raise _refused(refusal)
        return {"port": port, "state": core.ports[port].state.value}

    @app.post("/ports/{port}/clear-fault")
    async def clear_fault(port: int) -> dict[str, Any]:
        port_or_404(port)
        if (refusal := service.clear_fault(port)) is not None:
            raise _refused(refusal)
        return {"port": port, "state": core.ports[port].state.value}

    @app.post("/alarms/{alarm_id}/ack")
    async def ack(alarm_id: str, req: AckRequest) -> dict[str, Any]:
        if (refusal := service.acknowledge(alarm_id, req.by, req.note)) is not None:
            raise _refused(refusal, 404 if refusal.code == "unknown_alarm" else 409)
        return {"alarm": alarm_id, "acked_by": req.by}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus metrics (docs/telemetry.md). On the loop's thread: a consistent read."""
        body = ControllerMetrics.for_service(service).render()
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/sessions")
    async def sessions(open_only: bool = False) -> list[dict[str, Any]]:
        live = [session_data(s) for s in core.open_sessions()]
        if open_only:
            return live
        return [session_data(s) for s in service.closed] + live

    return app
