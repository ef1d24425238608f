"""Runs one shed's controller: the MQTT bridge, the service tick and the local API."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator

import httpx

from controller import __version__
from controller.clock import Clock
from controller.metrics import ControllerMetrics, message_sink
from controller.service import ControllerService
from controller.settings import Settings
from controller.telemetry import TelemetryExport
from controller.uplink import CommandPoller, LiveSender, Uplink
from firmware_bridge.modbus_bridge import ModbusBridge
from firmware_bridge.modbus_routing import RoutingBridge
from firmware_bridge.mqtt_adapter import MqttBridge, MqttSettings
from firmware_bridge.mqtt_codec import MqttCodec

log = logging.getLogger("ebshed.controller")


class TaskDied(RuntimeError):
    """A task the controller cannot run without ended with an error."""


def _supervise(
    tasks: list[asyncio.Task[None]], stop: asyncio.Event, died: list[BaseException]
) -> None:
    """A task that raises sets `stop`: the controller winds down and the process
    exits non-zero (systemd restarts it), instead of running on with dead timers."""

    def done(task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        err = task.exception()
        assert err is not None
        log.critical("task %s died: %r; stopping the controller", task.get_name(), err)
        died.append(TaskDied(f"task {task.get_name()} died: {err!r}"))
        died[-1].__cause__ = err
        stop.set()

    for task in tasks:
        task.add_done_callback(done)


def make_bridge(
    settings: Settings, service: ControllerService, clock: Clock
) -> MqttBridge | RoutingBridge:
    """The controller's device bridge: MQTT, plus one bus master per RS-485 bus.

    The MQTT bridge only accepts ports of MQTT boards, so nobody can inject
    readings for a Modbus socket over the broker; it also carries bays, env
    sensors, controller status and port state.
    """
    layout = settings.layout()
    codec = MqttCodec(layout.shed_id, settings.mqtt_ports(), set(layout.bays) or None)
    m = settings.mqtt
    sink = message_sink(service)  # service.on_message, observed by metrics and telemetry
    mqtt = MqttBridge(
        MqttSettings(
            host=m.host,
            port=m.port,
            client_id=m.client_id or f"ebshed-controller-{layout.shed_id}",
            keepalive_s=m.keepalive,
            username=m.username,
            password=m.password,
            tls_context=m.tls_context(),
            version=__version__,
        ),
        codec,
        clock,
        sink,
    )
    buses = settings.modbus_buses()
    bridge: MqttBridge | RoutingBridge = mqtt
    if buses:
        bridge = RoutingBridge()
        bridge.add("mqtt", mqtt)
        for bus in buses:
            bridge.add(bus.bus_id, ModbusBridge(bus, clock, sink), bus.ports)
    service.bridge = bridge
    return bridge


@contextlib.asynccontextmanager
async def running_controller(
    settings: Settings,
    clock: Clock,
    service: ControllerService | None = None,
    *,
    central_loops: bool = True,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[ControllerService]:
    """A connected controller whose timers run until the context exits.

    `central_loops=False` builds the link to the central API (`service.uplink`,
    `service.poller`) without running it: a stepped simulation drives it.
    If one of its tasks dies, `stop` (when given) is set, and leaving the context
    raises `TaskDied`."""
    service = service or ControllerService(settings, clock)
    export = None
    if settings.telemetry is not None:  # docs/telemetry.md
        export = TelemetryExport(settings.telemetry, service, clock)
    ControllerMetrics.for_service(service).telemetry = export
    bridge = make_bridge(settings, service, clock)
    tick_stop = asyncio.Event()
    died: list[BaseException] = []
    async with bridge, export or contextlib.nullcontext():
        mqtt = bridge.member("mqtt") if isinstance(bridge, RoutingBridge) else bridge
        assert isinstance(mqtt, MqttBridge)
        await asyncio.wait_for(mqtt.wait_connected(), 30)
        tasks = [asyncio.create_task(service.run(tick_stop), name="controller-tick")]
        client = None
        if settings.central is not None:
            client = httpx.AsyncClient(
                base_url=settings.central.url,
                headers={"Authorization": f"Bearer {settings.central.token}"},
                timeout=httpx.Timeout(10.0, read=settings.central.poll_wait_s + 10.0),
            )
            uplink = Uplink(service, client, clock)
            service.on_outbox(uplink.wake.set)
            poller = CommandPoller(service, client, clock, wait_s=settings.central.poll_wait_s)
            service.uplink, service.poller = uplink, poller
            if central_loops:
                tasks += [
                    asyncio.create_task(uplink.run(), name="uplink"),
                    asyncio.create_task(poller.run(), name="central-commands"),
                ]
            if central_loops and settings.central.live_every_s > 0:
                live = LiveSender(service, client, clock, settings.central.live_every_s)
                tasks.append(asyncio.create_task(live.run(), name="live-snapshots"))
        ocpp = None
        if settings.ocpp is not None:  # the shed as an OCPP 1.6J charge point: docs/ocpp.md
            from controller.ocpp.link import OcppLink  # the library loads only when configured

            ocpp = OcppLink(service, settings.ocpp, clock)
            tasks.append(asyncio.create_task(ocpp.run(), name="ocpp"))
        _supervise(tasks, stop or tick_stop, died)
        try:
            yield service
        finally:
            tick_stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if client is not None:
                await client.aclose()
            if ocpp is not None:
                ocpp.close()
            service.shutdown()
    if died:
        raise died[0]


async def serve_http(service: ControllerService, listen: str, stop: asyncio.Event) -> None:
    import uvicorn

    from controller.local_api import make_app

    host, _, port = listen.rpartition(":")
    config = uvicorn.Config(
        make_app(service),
        host=host or "127.0.0.1",
        port=int(port),
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(), name="local-api")
    stopping = asyncio.create_task(stop.wait(), name="local-api-stop")
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stopping.cancel()
    await asyncio.gather(serving, stopping, return_exceptions=True)
    stop.set()


async def run_forever(settings: Settings, clock: Clock, listen: str | None) -> None:
    """Run until SIGTERM or SIGINT; then persist open sessions and say offline."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with running_controller(settings, clock, stop=stop) as service:
        # Imports leave ~80k long-lived objects; freezing them keeps full collections
        # (which stall the event loop for up to 200 ms) short.
        gc.collect()
        gc.freeze()
        log.info(
            "controller for shed %s running; MQTT %s:%d",
            settings.shed.id,
            settings.mqtt.host,
            settings.mqtt.port,
        )
        if listen:
            await serve_http(service, listen, stop)
        else:
            await stop.wait()
    log.info("controller for shed %s stopped", settings.shed.id)
