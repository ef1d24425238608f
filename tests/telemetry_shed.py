"""A simulated shed whose controller exports telemetry: the shed harness with a
`[telemetry]` section, and boards that remember what they reported.

Same parts as tests/shed_harness.py (the real controller over the test
Mosquitto, simulated boards, a bay and a smoke sensor, a `SimClock` stepped
10 s at a time with the barrier); the export writes to whatever store URL the
test gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from controller.clock import SimClock
from controller.metrics import ControllerMetrics
from controller.runtime import running_controller
from controller.service import ControllerService
from controller.settings import settings_from_dict
from controller.telemetry import TelemetryExport
from simulators.board import SimBoard
from simulators.mqtt_runner import MqttDeviceRunner
from simulators.sensors import BaySensor, EnvSensor
from simulators.wire import Outgoing
from tests.brokers import mqtt_broker_address
from tests.core_helpers import T0
from tests.shed_harness import STEP_S, ShedHarness, harness_settings

HOUR_MS = 3_600_000
# A start on the hour: with interval_s = 3600 the sampling loop stays quiet for
# the first hour, and a test takes its samples itself, when the shed is still.
HOUR_START = T0 - T0 % HOUR_MS


class ReportingBoard(SimBoard):
    """A SimBoard that keeps the last telemetry it published per port."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.reported: dict[int, dict[str, Any]] = {}

    def _note(self, outs: list[Outgoing]) -> list[Outgoing]:
        for out in outs:
            if out.topic.endswith("/telemetry"):
                self.reported[int(out.topic.split("/")[-2])] = json.loads(out.payload)
        return outs

    def tick(self, now_ms: int) -> list[Outgoing]:
        return self._note(super().tick(now_ms))

    def handle(self, target: int | str, payload: bytes, now_ms: int) -> list[Outgoing]:
        return self._note(super().handle(target, payload, now_ms))


def export_of(h: ShedHarness) -> TelemetryExport:
    export = ControllerMetrics.for_service(h.service).telemetry
    assert export is not None
    return export


async def until(cond: Callable[[], bool], within_s: float = 30.0, what: str = "condition") -> None:
    """Wait (real time, the loop free) for the writer thread; fail after `within_s`."""
    deadline = time.monotonic() + within_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within_s} s")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def telemetry_shed(
    tmp_path: Path,
    telemetry: dict[str, Any] | None,
    *,
    start_ms: int = T0,
    central: dict[str, Any] | None = None,
    temp_sensor: bool = False,
) -> AsyncIterator[ShedHarness]:
    host, port = mqtt_broker_address()
    shed = f"t-{uuid.uuid4().hex[:12]}"
    clock = SimClock(start_ms)
    rng = random.Random(1)
    raw = harness_settings(shed, tmp_path, host, port).model_dump()
    settings = settings_from_dict({**raw, "telemetry": telemetry, "central": central})
    board = ReportingBoard(
        shed, "b1", [1, 2, 3, 4], rng=rng, start_ms=start_ms, interval_on_s=10, interval_off_s=60
    )
    bay = BaySensor(shed, 1, rng=rng, start_ms=start_ms)
    smoke = EnvSensor(shed, "smoke-1", "smoke", rng=rng, start_ms=start_ms)
    sensors: list[Any] = [board, bay, smoke]
    if temp_sensor:  # a shed temperature sensor, reporting every minute
        sensors.append(EnvSensor(shed, "temp-1", "temp", rng=rng, start_ms=start_ms))
    service = ControllerService(settings, clock)
    async with (
        running_controller(settings, clock, service),
        MqttDeviceRunner(
            host, port, shed, sensors, clock, announce_offline_on_close=False
        ) as runner,
    ):
        h = ShedHarness(settings, clock, service, runner, board, bay, smoke)
        await h.barrier.calibrate()
        await h.run(STEP_S)
        yield h
