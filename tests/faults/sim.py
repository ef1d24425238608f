"""Simulated boards for the fault suite, on a real broker, with ground truth.

The boards are the project's `SimBoard` (the MQTT contract to the letter) on
the project's `MqttDeviceRunner`, driven by the real clock in a thread of the
test process, so a test can plug bikes, tap cards, reboot boards, skew their
clocks or silence a relay at the moment it chooses, while the controller runs
in its own process. `RecordingBoard` adds the ground truth the invariant
check needs: every relay-on period of every socket with the energy that
really flowed in it.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from controller.clock import RealClock
from simulators.board import SimBoard
from simulators.ebike import BikeSpec, EBike
from simulators.mqtt_runner import MqttDeviceRunner
from simulators.sensors import BaySensor, EnvSensor
from simulators.wire import Device, Outgoing

T = TypeVar("T")


@dataclass(slots=True)
class RelayPeriod:
    """One stretch with a socket's relay on (or power flowing through a welded one)."""

    port: int
    on_ms: int
    on_wh: float  # the socket's true energy counter when it began
    off_ms: int | None = None
    off_wh: float | None = None

    def energy_wh(self, now_wh: float) -> float:
        return (self.off_wh if self.off_wh is not None else now_wh) - self.on_wh


class RecordingBoard(SimBoard):
    """A `SimBoard` that records relay periods and can ignore a port's commands.

    A port in `silent_ports` neither executes nor acknowledges a command (its
    relay driver hangs); the firmware's lease timer still runs.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.periods: list[RelayPeriod] = []
        self.silent_ports: set[int] = set()
        self.ignored: list[tuple[int, str]] = []  # (port, op) of each command ignored
        self._open: dict[int, RelayPeriod] = {}

    def _observe(self) -> None:
        for port in self.ports:
            flowing = self.relay(port) or self.power_w(port) > 0.0
            period = self._open.get(port)
            if flowing and period is None:
                period = RelayPeriod(port, self.now_ms, self.true_wh(port))
                self._open[port] = period
                self.periods.append(period)
            elif not flowing and period is not None:
                period.off_ms, period.off_wh = self.now_ms, self.true_wh(port)
                del self._open[port]

    def tick(self, now_ms: int) -> list[Outgoing]:
        out = super().tick(now_ms)
        self._observe()
        return out

    def handle(self, target: int | str, payload: bytes, now_ms: int) -> list[Outgoing]:
        text = str(target)
        port = int(text.split("/port/")[1].split("/")[0]) if "/port/" in text else None
        if port in self.silent_ports:
            try:
                op = str(json.loads(payload).get("op"))
            except (ValueError, AttributeError):
                op = "?"
            self.ignored.append((port, op))
            return self.tick(now_ms)
        out = super().handle(target, payload, now_ms)
        self._observe()
        return out

    def reboot(self, now_ms: int) -> list[Outgoing]:
        out = super().reboot(now_ms)
        self._observe()
        return out

    def power_cut(self, now_ms: int) -> list[Outgoing]:
        out = super().power_cut(now_ms)
        self._observe()
        return out

    def power_restore(self, now_ms: int) -> list[Outgoing]:
        out = super().power_restore(now_ms)
        self._observe()
        return out


def fast_charger(rng: random.Random, bike_id: str = "") -> EBike:
    """A charger that draws 2.5-3.2 kW without tapering: watt-hours accrue in seconds.

    The suite compresses hours of charging into seconds this way (the controller's
    clock is real time); every rule that depends on power is configured for it.
    """
    spec = BikeSpec(
        chemistry="lead_acid",
        capacity_wh=1e7,
        cc_w=rng.uniform(2500.0, 3200.0),
        cv_soc=0.99,
        turn_w=30.0,
        float_w=5.0,
        noise_w=5.0,
        power_factor=rng.uniform(0.8, 0.98),
        fault="no_taper",
    )
    return EBike(spec, 0.2, rng, bike_id)


class SimShed:
    """Boards, bay sensors and a smoke sensor of one shed, in a background event loop."""

    def __init__(
        self,
        shed: str,
        boards: dict[str, list[int]],
        host: str,
        port: int,
        *,
        seed: int = 1,
        wh_start: dict[int, int] | None = None,
        bays: list[int] | None = None,
        tick_s: float = 0.1,
    ) -> None:
        self.shed = shed
        self.host, self.port = host, port
        self.rng = random.Random(seed)
        self.clock = RealClock()
        self.tick_s = tick_s
        now = self.clock.now_ms()
        self.boards: dict[str, RecordingBoard] = {
            board_id: RecordingBoard(
                shed, board_id, ports, rng=self.rng, start_ms=now,
                interval_on_s=1.0, interval_off_s=1.0,
                wh_start={p: (wh_start or {}).get(p, 1000 * p) for p in ports},
                default_max_w=4000.0,
            )
            for board_id, ports in boards.items()
        }  # fmt: skip
        self.board_of = {p: b for b in self.boards.values() for p in b.ports}
        self.bays = {n: BaySensor(shed, n, rng=self.rng, start_ms=now) for n in bays or []}
        self.smoke = EnvSensor(shed, "smoke-1", "smoke", rng=self.rng, start_ms=now,
                               interval_s=30.0)  # fmt: skip
        devices: list[Device] = [*self.boards.values(), *self.bays.values(), self.smoke]
        self._devices = devices
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sim-shed",
                                        daemon=True)  # fmt: skip
        self.runner: MqttDeviceRunner | None = None
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._thread.start()
        self._run(self._start())

    async def _start(self) -> None:
        self.runner = MqttDeviceRunner(self.host, self.port, self.shed, self._devices, self.clock,
                                       reconnect_delay_s=0.2, keepalive_s=5)  # fmt: skip
        await self.runner.start()
        self.runner.spawn(self.runner.run(tick_s=self.tick_s))

    def close(self) -> None:
        if self.runner is not None:
            self._run(self.runner.close(), timeout=20)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the simulator's loop (between two ticks) and return its result."""

        async def wrapped() -> T:
            return fn()

        result: T = self._run(wrapped())
        return result

    # ---------------------------------------------------------------- people

    def _publish(self, device: Device, outs: list[Outgoing]) -> None:
        assert self.runner is not None
        self.runner.publish(device, outs)

    def plug(self, port: int, bike: EBike | None = None) -> EBike:
        board = self.board_of[port]
        bike = bike or fast_charger(self.rng, f"bike-{port}")

        def go() -> EBike:
            if board.bike(port) is None:
                self._publish(board, board.plug(port, bike, self.clock.now_ms()))
            return board.bike(port) or bike

        return self.call(go)

    def unplug(self, port: int) -> None:
        board = self.board_of[port]
        self.call(lambda: self._publish(board, board.unplug(port, self.clock.now_ms())))

    def tap(self, port: int, uid: str) -> None:
        board = self.board_of[port]
        self.call(lambda: self._publish(board, board.tap_card(port, uid, self.clock.now_ms())))

    def set_bay(self, bay: int, occupied: bool) -> None:
        sensor = self.bays[bay]
        self.call(lambda: self._publish(sensor,
                                        sensor.set_occupied(occupied, self.clock.now_ms())))

    def set_smoke(self, smoke: bool) -> None:
        self.call(lambda: self._publish(self.smoke, self.smoke.set_smoke(smoke,
                                                                         self.clock.now_ms())))

    # ---------------------------------------------------------------- faults

    def reboot_board(self, board_id: str, drop_connection: bool = False) -> None:
        assert self.runner is not None
        self._run(self.runner.reboot_board(board_id, drop_connection=drop_connection))

    def power_cut(self, board_id: str) -> None:
        assert self.runner is not None
        self._run(self.runner.power_cut(board_id))

    def power_restore(self, board_id: str) -> None:
        assert self.runner is not None
        self._run(self.runner.power_restore(board_id))

    def set_clock_offset(self, board_id: str, offset_ms: int) -> None:
        board = self.boards[board_id]

        def go() -> None:
            board.clock_offset_ms = offset_ms

        self.call(go)

    def set_register(self, port: int, value: int) -> None:
        board = self.board_of[port]
        self.call(lambda: board.set_register(port, value))

    def silence(self, port: int) -> None:
        self.call(lambda: self.board_of[port].silent_ports.add(port))

    def ignored(self, port: int) -> list[str]:
        """The ops of the commands a silenced port ignored, in order."""
        board = self.board_of[port]
        return self.call(lambda: [op for p, op in board.ignored if p == port])

    def bike_power(self) -> float:
        """What every plugged-in charger draws at full power (the shed's peak load)."""
        def go() -> float:
            bikes = [b.bike(p) for p, b in self.board_of.items()]
            return sum(bike.spec.cc_w for bike in bikes if bike is not None)

        return self.call(go)

    # ---------------------------------------------------------------- truth

    def relays(self) -> dict[int, bool]:
        return self.call(lambda: {p: b.relay(p) for p, b in self.board_of.items()})

    def powers(self) -> dict[int, float]:
        return self.call(lambda: {p: b.power_w(p) for p, b in self.board_of.items()})

    def registers(self) -> dict[int, int]:
        return self.call(lambda: {p: b.register(p) for p, b in self.board_of.items()})

    def truth(self) -> tuple[list[RelayPeriod], dict[int, float]]:
        """Every relay period so far (copies) and each socket's true energy counter."""

        def go() -> tuple[list[RelayPeriod], dict[int, float]]:
            periods = [RelayPeriod(p.port, p.on_ms, p.on_wh, p.off_ms, p.off_wh)
                       for b in self.boards.values() for p in b.periods]  # fmt: skip
            return periods, {p: b.true_wh(p) for p, b in self.board_of.items()}

        return self.call(go)

    def disconnect(self, board_id: str) -> None:
        """The board's network goes (its will fires); it keeps mains, relays and leases."""
        assert self.runner is not None
        link = self.runner._links[board_id]  # the runner has no public per-board cut
        self._run(link.cut())

    def reconnect(self, board_id: str) -> None:
        assert self.runner is not None
        link = self.runner._links[board_id]
        self._run(link.open())
