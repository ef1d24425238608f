"""The controller's `GET /metrics`: a real controller over the real broker, its
local API over real HTTP, and the Prometheus text parsed back."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from controller import __version__
from controller.clock import SimClock
from controller.core.model import Authorization
from controller.metrics import ControllerMetrics, with_observers
from controller.runtime import serve_http
from controller.service import ControllerService
from firmware_bridge.messages import CmdAck, DeviceMessage, EnvReading, Telemetry
from simulators import ebike
from simulators.wire import Outgoing
from tests.brokers import free_port
from tests.core_helpers import T0
from tests.prometheus_text import Samples, parse, value
from tests.shed_harness import ShedHarness, harness_settings
from tests.telemetry_shed import export_of, telemetry_shed, until

CARD = "04A1B2C3"


@asynccontextmanager
async def local_api(h: ShedHarness) -> AsyncIterator[httpx.AsyncClient]:
    listen = f"127.0.0.1:{free_port()}"
    stop = asyncio.Event()
    server = asyncio.create_task(serve_http(h.service, listen, stop))
    try:
        async with httpx.AsyncClient(base_url=f"http://{listen}", timeout=10) as client:
            await until(lambda: server.done() or _listening(listen), what="the local API")
            yield client
    finally:
        stop.set()
        await server


def _listening(listen: str) -> bool:
    import socket

    host, _, port = listen.rpartition(":")
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) == 0


async def scrape(client: httpx.AsyncClient) -> Samples:
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=")
    return parse(resp.text)


async def test_metrics_count_messages_drops_sessions_commands_outbox_and_export(
    tmp_path: Path,
) -> None:
    telemetry = {
        "url": f"http://127.0.0.1:{free_port()}",
        "interval_s": 10,
        "flush_s": 0.1,
        "retry_max_s": 0.2,
        "buffer_points": 100,
        "batch_points": 50,
    }
    central = {"url": f"http://127.0.0.1:{free_port()}", "token": "shed-token-123"}
    async with telemetry_shed(tmp_path, telemetry, central=central) as h, local_api(h) as api:
        t = h.clock.now_ms()
        await h.publish(h.board.plug(1, ebike.lead_acid(random.Random(3), soc=0.4), t))
        await h.publish(h.board.tap_card(1, CARD, t))
        bad = Outgoing(f"ebs/v1/{h.shed}/port/2/telemetry", b"{not json", 0, False)
        await h.publish([bad, bad])
        await h.run(130)  # renewals at 60 s and 120 s
        assert h.service.stop_session(1, "operator") is None
        await h.run(10)
        await until(lambda: export_of(h).counters()["write_failures"] >= 1, what="a failure")

        m = await scrape(api)
        bridge = h.counters()
        export = export_of(h).counters()
        outbox = h.service.store.outbox_depth()

    received = value(m, "ebshed_controller_messages_received_total", bridge="mqtt")
    assert received == bridge["received"] > 20
    dropped = value(m, "ebshed_controller_messages_dropped_total", bridge="mqtt", reason="not_json")
    assert dropped == 2
    assert (
        value(m, "ebshed_controller_bridge_commands_total", bridge="mqtt", outcome="acked")
        == (bridge["commands_acked"])
    )
    assert value(m, "ebshed_controller_sessions_opened_total") == 1
    assert value(m, "ebshed_controller_sessions_closed_total", reason="operator") == 1
    assert value(m, "ebshed_controller_sessions_open") == 0
    assert value(m, "ebshed_controller_sockets", state="idle") == 4
    assert value(m, "ebshed_controller_commands_total", op="on") == 1
    assert value(m, "ebshed_controller_commands_total", op="renew") == 2
    # Every command was acked: one latency observation each, none lost.
    assert value(m, "ebshed_controller_command_latency_seconds_count", op="on", result="ok") == 1
    assert value(m, "ebshed_controller_command_latency_seconds_count", op="renew", result="ok") == 2
    assert value(m, "ebshed_controller_command_latency_seconds_count", op="off", result="ok") == 1
    # Records for the unreachable central API wait in the outbox.
    assert value(m, "ebshed_controller_outbox_depth") == outbox > 0
    assert value(m, "ebshed_controller_uplink_errors_total") >= 1
    # The export's own counts, as the export keeps them.
    assert value(m, "ebshed_controller_telemetry_points_written_total") == 0
    assert value(m, "ebshed_controller_telemetry_write_failures_total") == export["write_failures"]
    full = value(m, "ebshed_controller_telemetry_points_dropped_total", reason="buffer_full")
    assert full == export["dropped"]["buffer_full"] > 0
    assert value(m, "ebshed_controller_telemetry_buffered_points") == 100
    assert value(m, "ebshed_controller_info", shed=h.shed, version=__version__) == 1
    assert value(m, "process_resident_memory_bytes") > 10e6


async def test_without_export_or_central_the_rest_is_served(tmp_path: Path) -> None:
    async with telemetry_shed(tmp_path, None) as h, local_api(h) as api:
        m = await scrape(api)
    assert value(m, "ebshed_controller_sockets", state="idle") == 4
    assert value(m, "ebshed_controller_outbox_depth") == 0
    names = {name for name, _ in m}
    assert not any(n.startswith("ebshed_controller_telemetry_") for n in names)
    assert not any(n.startswith("ebshed_controller_uplink_") for n in names)


def test_observers_see_every_message_but_meter_samples_after_the_core(tmp_path: Path) -> None:
    settings = harness_settings("obs-1", tmp_path, "127.0.0.1", 1883)
    service = ControllerService(settings, SimClock(T0))
    seen: list[tuple[str, int]] = []

    def observe(msg: DeviceMessage) -> None:
        seen.append((type(msg).__name__, service.stats.messages))

    sink = with_observers(service.on_message, [observe])
    sink(Telemetry(1, T0, 0, 230.0, 0.0, 0.0, 100, False, 25.0))
    sink(EnvReading("smoke-1", T0, "smoke", 0.0, False))
    sink(CmdAck(1, "c-unknown", True, False))
    assert seen == [("EnvReading", 2), ("CmdAck", 3)]  # the core had each one first
    assert with_observers(service.on_message, []) == service.on_message


def test_one_metrics_object_per_service(tmp_path: Path) -> None:
    settings = harness_settings("obs-2", tmp_path, "127.0.0.1", 1883)
    service = ControllerService(settings, SimClock(T0))
    metrics = ControllerMetrics.for_service(service)
    assert ControllerMetrics.for_service(service) is metrics
    other = ControllerService(harness_settings("obs-3", tmp_path, "127.0.0.1", 1883), SimClock(T0))
    assert ControllerMetrics.for_service(other) is not metrics
    assert b"ebshed_controller_sessions_open 0.0" in metrics.render()


def test_an_ack_ends_the_latency_of_its_command(tmp_path: Path) -> None:
    settings = harness_settings("obs-4", tmp_path, "127.0.0.1", 1883)
    clock = SimClock(T0)
    service = ControllerService(settings, clock)
    metrics = ControllerMetrics.for_service(service)
    sink = with_observers(service.on_message, [metrics.on_message])
    from firmware_bridge.messages import BoardStatus

    sink(BoardStatus("b1", True, "1.0", (1, 2, 3, 4), T0))
    sink(Telemetry(1, T0, 0, 230.0, 0.0, 0.0, 100, False, 25.0))
    result = service.start_session(1, Authorization("order", "o-1", 300))
    assert not hasattr(result, "code")
    ((cmd_id, (op, _)),) = metrics._sent.items()
    assert op == "on"
    clock.advance(0.25)
    sink(CmdAck(1, cmd_id, True, True))
    m = parse(metrics.render().decode())
    assert value(m, "ebshed_controller_command_latency_seconds_count", op="on", result="ok") == 1
    assert value(m, "ebshed_controller_command_latency_seconds_sum", op="on", result="ok") == 0.25
    assert (
        value(m, "ebshed_controller_command_latency_seconds_bucket", op="on", result="ok", le="0.1")
        == 0
    )
    assert metrics._sent == {}
