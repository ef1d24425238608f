"""Prometheus metrics of one controller, served at `GET /metrics` on the local API.

Almost everything is read when Prometheus scrapes, from counters the parts
keep anyway (the bridge's, the core's, the service's, the uplink's, the
telemetry export's): nothing is added to the per-sample path. Two things are
observed as they happen: commands sent (a service listener) and their acks
(an observer of the bridge's messages, called for every message but meter
samples), for the command latency; and session ends, by reason.

Metric names and what they mean: docs/telemetry.md#prometheus-metrics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar
from weakref import WeakKeyDictionary

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from controller import __version__
from controller.core.fsm import SocketState
from controller.core.model import Action, SendCommand, SessionClosed
from controller.service import STORE_ERRORS, ControllerService
from firmware_bridge.messages import CmdAck, DeviceMessage, Telemetry
from firmware_bridge.modbus_routing import RoutingBridge

if TYPE_CHECKING:
    from controller.telemetry import TelemetryExport

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
MAX_TRACKED_COMMANDS = 4096  # sent, not acked yet; the oldest are forgotten past this
# Bridge counters that are drops (the rest of `dropped.<reason>` are named by the codec).
DROP_COUNTERS = {
    "incoming_overflow": "incoming_queue_full",
    "unexpected_ack": "unexpected_ack",
    "duplicate_ack": "duplicate_ack",
    "sink_errors": "sink_error",
}
BRIDGE_GAUGES = frozenset(("pending_commands", "boards_online", "last_cycle_ms", "dropped"))

Sink = Callable[[DeviceMessage], None]
Observer = Callable[[DeviceMessage], None]


def with_observers(sink: Sink, observers: list[Observer]) -> Sink:
    """The bridge's sink, followed by `observers` for every message but meter samples.

    The core handles each message first; the observers see it after, so they
    never delay control. Meter samples cost one class comparison.
    """
    if not observers:
        return sink

    def observed(msg: DeviceMessage) -> None:
        sink(msg)
        if msg.__class__ is not Telemetry:
            for observe in observers:
                observe(msg)

    return observed


def message_sink(service: ControllerService) -> Sink:
    """The bridge's sink: `service.on_message`, then this service's metrics and
    telemetry export (if any) observe every message but meter samples."""
    metrics = ControllerMetrics.for_service(service)
    observers: list[Observer] = [metrics.on_message]
    if metrics.telemetry is not None:
        observers.append(metrics.telemetry.on_message)
    return with_observers(service.on_message, observers)


class ControllerMetrics:
    """One controller's registry. `render()` is the body of `GET /metrics`.

    One per service: `ControllerMetrics.for_service(service)` makes it on first
    use, and the runtime, the bridge's sink and the local API share it.
    """

    _by_service: ClassVar[WeakKeyDictionary[ControllerService, ControllerMetrics]] = (
        WeakKeyDictionary()
    )

    @classmethod
    def for_service(cls, service: ControllerService) -> ControllerMetrics:
        metrics = cls._by_service.get(service)
        if metrics is None:
            metrics = cls._by_service[service] = cls(service)
        return metrics

    def __init__(self, service: ControllerService) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.telemetry: TelemetryExport | None = None  # set by the runtime when exporting
        self.command_latency = Histogram(
            "ebshed_controller_command_latency_seconds",
            "From the core's relay command to the board's ack (controller clock).",
            ["op", "result"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._sent: dict[str, tuple[str, int]] = {}  # command id -> (op, sent ms)
        self._commands: dict[str, int] = {}  # op -> commands sent
        self._closed: dict[str, int] = {}  # end reason -> sessions closed
        self.registry.register(_StateCollector(self))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        service.add_listener(self.on_action)

    def on_action(self, action: Action) -> None:
        if isinstance(action, SendCommand):
            cmd = action.cmd
            self._commands[cmd.op] = self._commands.get(cmd.op, 0) + 1
            if cmd.id not in self._sent:  # a re-send keeps the first time
                if len(self._sent) >= MAX_TRACKED_COMMANDS:
                    del self._sent[next(iter(self._sent))]
                self._sent[cmd.id] = (cmd.op, self.service.clock.now_ms())
        elif isinstance(action, SessionClosed):
            reason = action.session.end_reason or "unknown"
            self._closed[reason] = self._closed.get(reason, 0) + 1

    def on_message(self, msg: DeviceMessage) -> None:
        """The bridge's observer: an ack ends a command's latency."""
        if isinstance(msg, CmdAck):
            sent = self._sent.pop(msg.id, None)
            if sent is not None:
                op, sent_ms = sent
                seconds = max(0, self.service.clock.now_ms() - sent_ms) / 1000
                result = "ok" if msg.ok else "error"
                self.command_latency.labels(op, result).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _counter(name: str, doc: str, labels: list[str], rows: dict[tuple[str, ...], float]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in sorted(rows.items()):
        family.add_metric(list(key), value)
    return family


def _gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def _bridge_counters(bridge: Any) -> dict[str, dict[str, int]]:
    """Counters per bridge member: {"mqtt": {...}, "<bus id>": {...}}."""
    counters = getattr(bridge, "counters", None)
    if counters is None:
        return {}
    raw: dict[str, int] = counters()
    if not isinstance(bridge, RoutingBridge):
        return {"mqtt": raw}
    out: dict[str, dict[str, int]] = {}
    for key, value in raw.items():
        name, _, rest = key.partition(".")
        out.setdefault(name, {})[rest] = value
    return out


class _StateCollector:
    """Reads every counter and gauge at scrape time."""

    def __init__(self, metrics: ControllerMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self._bridge()
        yield from self._core()
        yield from self._service()
        yield from self._telemetry()

    def _bridge(self) -> Iterator[Metric]:
        received: dict[tuple[str, ...], float] = {}
        delivered: dict[tuple[str, ...], float] = {}
        dropped: dict[tuple[str, ...], float] = {}
        commands: dict[tuple[str, ...], float] = {}
        events: dict[tuple[str, ...], float] = {}
        pending = GaugeMetricFamily(
            "ebshed_controller_bridge_pending_commands",
            "Commands queued or waiting for their ack in the device bridge.",
            labels=["bridge"],
        )
        for name, counts in _bridge_counters(self.m.service.bridge).items():
            for key, value in counts.items():
                if key == "received":
                    received[(name,)] = value
                elif key == "delivered":
                    delivered[(name,)] = value
                elif key.startswith("dropped."):
                    dropped[(name, key.removeprefix("dropped."))] = value
                elif key in DROP_COUNTERS:
                    dropped[(name, DROP_COUNTERS[key])] = value
                elif key.startswith("commands_"):
                    commands[(name, key.removeprefix("commands_"))] = value
                elif key == "pending_commands":
                    pending.add_metric([name], value)
                elif key not in BRIDGE_GAUGES:
                    events[(name, key)] = value
        yield _counter(
            "ebshed_controller_messages_received",
            "Device messages read by the bridge (MQTT), valid or not.",
            ["bridge"],
            received,
        )
        yield _counter(
            "ebshed_controller_messages_delivered",
            "Device messages handed to the controller's core.",
            ["bridge"],
            delivered,
        )
        yield _counter(
            "ebshed_controller_messages_dropped",
            "Device messages dropped by the bridge, by reason.",
            ["bridge", "reason"],
            dropped,
        )
        yield _counter(
            "ebshed_controller_bridge_commands",
            "Relay commands in the bridge: sent, acked, retried, failed, ...",
            ["bridge", "outcome"],
            commands,
        )
        yield _counter(
            "ebshed_controller_bridge_events",
            "Other bridge counters: connects, reconnects, poll cycles, line errors, ...",
            ["bridge", "event"],
            events,
        )
        yield pending

    def _core(self) -> Iterator[Metric]:
        core = self.m.service.core
        c = core.counters
        yield _counter(
            "ebshed_controller_meter_samples", "Meter samples handled.", [], {(): c.samples}
        )
        yield _counter(
            "ebshed_controller_samples_discarded",
            "Meter samples the core discarded, by reason (out of order, future, ...).",
            ["reason"],
            {(k,): v for k, v in c.discarded.items()},
        )
        yield _counter(
            "ebshed_controller_start_refusals",
            "Session starts refused, by code.",
            ["code"],
            {(k,): v for k, v in c.refusals.items()},
        )
        states = GaugeMetricFamily(
            "ebshed_controller_sockets", "Sockets by state.", labels=["state"]
        )
        counts = dict.fromkeys(SocketState, 0)
        for p in core.ports.values():
            counts[p.state] += 1
        for state, n in counts.items():
            states.add_metric([state.value], n)
        yield states
        yield _gauge("ebshed_controller_power_watts", "Power the shed draws.", core.shed_power_w())
        yield _gauge("ebshed_controller_sessions_open", "Sessions open.", len(core.open_sessions()))
        yield _gauge(
            "ebshed_controller_boards_online",
            "Socket boards online.",
            sum(core.board_online.values()),
        )
        yield _gauge(
            "ebshed_controller_bays_occupied",
            "Parking bays occupied.",
            sum(b.occupied for b in core.bays.values()),
        )
        active: dict[str, int] = {}
        for a in core.alarms.values():
            if a.active:
                active[a.kind] = active.get(a.kind, 0) + 1
        alarms = GaugeMetricFamily(
            "ebshed_controller_alarms_active", "Active alarms, by kind.", labels=["kind"]
        )
        for kind, n in sorted(active.items()):
            alarms.add_metric([kind], n)
        yield alarms
        yield _gauge(
            "ebshed_controller_alarms_unacknowledged",
            "Alarms not acknowledged by staff yet.",
            sum(a.acked_ms is None for a in core.alarms.values()),
        )

    def _service(self) -> Iterator[Metric]:
        service = self.m.service
        yield _gauge(
            "ebshed_controller_info",
            "The controller: shed id and version.",
            1,
            {"shed": service.settings.shed.id, "version": __version__},
        )
        yield _counter(
            "ebshed_controller_sessions_opened",
            "Sessions opened since start.",
            [],
            {(): service.stats.sessions_opened},
        )
        yield _counter(
            "ebshed_controller_sessions_closed",
            "Sessions closed since start, by end reason.",
            ["reason"],
            {(k,): v for k, v in self.m._closed.items()},
        )
        yield _counter(
            "ebshed_controller_commands",
            "Relay commands the core sent, by op (on, off, renew).",
            ["op"],
            {(k,): v for k, v in self.m._commands.items()},
        )
        yield _counter(
            "ebshed_controller_card_refusals",
            "IC card taps refused, by reason.",
            ["reason"],
            {(k,): v for k, v in service.stats.card_refusals.items()},
        )
        health = service.store_health
        yield _gauge(
            "ebshed_controller_store_ok",
            "1 while writes reach the shed's database, 0 while they fail (alarm store_failed).",
            int(health.ok),
        )
        yield _counter(
            "ebshed_controller_store_write_failures",
            "Writes to the shed's database that failed (each is retried).",
            [],
            {(): health.failures},
        )
        yield _gauge(
            "ebshed_controller_store_queued",
            "Steps (starts, closes, checkpoints, alarms) waiting to be written.",
            health.queued,
        )
        with contextlib.suppress(*STORE_ERRORS):  # a failing store must not fail /metrics
            yield _gauge(
                "ebshed_controller_outbox_depth",
                "Records waiting in the outbox for the central API.",
                service.store.outbox_depth(),
            )
        uplink = service.uplink
        if uplink is not None:
            counts = uplink.counts
            yield _counter(
                "ebshed_controller_uplink_records",
                "Records the central API answered for, by outcome.",
                ["outcome"],
                {(k,): counts[k] for k in ("applied", "duplicates", "rejected")},
            )
            yield _counter(
                "ebshed_controller_uplink_errors",
                "Uplink calls that failed (kept and retried).",
                [],
                {(): counts["errors"]},
            )

    def _telemetry(self) -> Iterator[Metric]:
        export = self.m.telemetry
        if export is None:
            return
        c = export.counters()
        yield _counter(
            "ebshed_controller_telemetry_points_written",
            "Points the time-series store accepted.",
            [],
            {(): c["points_written"]},
        )
        yield _counter(
            "ebshed_controller_telemetry_points_dropped",
            "Points lost, by reason (buffer_full, rejected, shutdown).",
            ["reason"],
            {(k,): v for k, v in c["dropped"].items()},
        )
        yield _counter(
            "ebshed_controller_telemetry_write_failures",
            "Writes that failed and were kept for a retry.",
            [],
            {(): c["write_failures"]},
        )
        yield _gauge(
            "ebshed_controller_telemetry_buffered_points",
            "Points waiting to be written.",
            c["buffered"],
        )
        if c["last_success_s"] is not None:
            yield _gauge(
                "ebshed_controller_telemetry_last_write_timestamp_seconds",
                "Wall time of the last successful write.",
                c["last_success_s"],
            )
