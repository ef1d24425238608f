"""A real controller and simulated boards on a real broker, in simulated time.

`ShedHarness` runs the same code as `ebshed controller run` (bridge, service,
SQLite) against the test Mosquitto, with a `SimClock`: each `run(seconds)`
advances time in 10-second steps and waits, after each, until both sides
have handled every message (the demo's barrier). A shed id per test keeps
tests apart on the shared broker.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from controller.clock import SimClock
from controller.core.model import Session
from controller.runtime import running_controller
from controller.service import ControllerService
from controller.settings import Settings, settings_from_dict
from simulators.board import SimBoard
from simulators.demo import Barrier
from simulators.mqtt_runner import MqttDeviceRunner
from simulators.sensors import BaySensor, EnvSensor
from tests.brokers import mqtt_broker_address
from tests.core_helpers import T0

STEP_S = 10


def harness_settings(shed: str, data_dir: Path, host: str, port: int,
                     rules: dict[str, Any] | None = None) -> Settings:
    return settings_from_dict({
        "shed": {"id": shed, "data_dir": str(data_dir)},
        "mqtt": {"host": host, "port": port},
        "boards": [{"id": "b1", "ports": [1, 2, 3, 4]}],
        "bays": {"1": 1, "2": None},
        "rules": rules or {},
        "cards": [{"uid": "04A1B2C3", "balance_fen": 1000}],
    })


class ShedHarness:
    def __init__(self, settings: Settings, clock: SimClock, service: ControllerService,
                 runner: MqttDeviceRunner, board: SimBoard, bay: BaySensor,
                 smoke: EnvSensor) -> None:
        self.settings, self.clock, self.service = settings, clock, service
        self.runner, self.board, self.bay, self.smoke = runner, board, bay, smoke
        self.barrier = Barrier(service, runner)

    @property
    def shed(self) -> str:
        return self.settings.shed.id

    async def run(self, seconds: float) -> None:
        for _ in range(max(1, round(seconds / STEP_S))):
            t = self.clock.now_ms() + STEP_S * 1000
            self.clock.advance_to(t)
            await self.runner.step(t)
            await self.barrier.settle(10)

    async def run_until(self, cond: Any, limit_s: float) -> None:
        waited = 0.0
        while not cond() and waited < limit_s:
            await self.run(STEP_S)
            waited += STEP_S

    async def publish(self, outs: list[Any], device: Any = None) -> None:
        self.runner.publish(device or self.board, outs)
        await self.barrier.settle(10)

    def session(self, port: int) -> Session | None:
        return self.service.core.ports[port].session

    def closed(self) -> list[Session]:
        return self.service.closed

    def counters(self) -> dict[str, int]:
        assert self.service.bridge is not None
        return self.service.bridge.counters()  # type: ignore[attr-defined, no-any-return]


@contextlib.asynccontextmanager
async def shed_harness(tmp_path: Path, rules: dict[str, Any] | None = None,
                       clock: SimClock | None = None, shed: str | None = None,
                       board: SimBoard | None = None) -> AsyncIterator[ShedHarness]:
    host, port = mqtt_broker_address()
    shed = shed or f"t-{uuid.uuid4().hex[:12]}"
    clock = clock or SimClock(T0)
    rng = random.Random(1)
    settings = harness_settings(shed, tmp_path, host, port, rules)
    board = board or SimBoard(shed, "b1", [1, 2, 3, 4], rng=rng, start_ms=clock.now_ms(),
                              interval_on_s=10, interval_off_s=60)
    bay = BaySensor(shed, 1, rng=rng, start_ms=clock.now_ms())
    smoke = EnvSensor(shed, "smoke-1", "smoke", rng=rng, start_ms=clock.now_ms())
    service = ControllerService(settings, clock)
    async with (
        running_controller(settings, clock, service),
        MqttDeviceRunner(host, port, shed, [board, bay, smoke], clock,
                         announce_offline_on_close=False) as runner,
    ):
        h = ShedHarness(settings, clock, service, runner, board, bay, smoke)
        await h.barrier.calibrate()
        await h.run(STEP_S)
        yield h
