"""The simulated hardware of a shed: MQTT boards, RS-485 boards, sensors.

One object that knows, for every socket, which simulated board carries it and
how to reach it (an MQTT board publishes through the runner; an RS-485 board
is read by the controller's bus master over a pty). People in the demo plug
bikes in, tap cards and unplug through `plug`, `tap`, `unplug` by socket
number, whatever the transport.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from controller.clock import Clock
from simulators.board import SimBoard
from simulators.ebike import EBike
from simulators.modbus_board import ModbusSimBoard
from simulators.modbus_bus import SimModbusBus
from simulators.mqtt_runner import MqttDeviceRunner
from simulators.sensors import BaySensor, EnvSensor
from simulators.wire import Device

Transport = Literal["mqtt", "modbus", "mixed"]
TRANSPORTS: tuple[str, ...] = ("mqtt", "modbus", "mixed")
SOCKETS_PER_BOARD = 12
BUS_ID = "rs485-1"
U32 = 1 << 32
BUS_BAUD = 115200  # the demo's bus; `ebshed bench modbus-poll` measures 9600 too
# Telemetry of a simulated board, in simulated seconds: the contract asks for at
# least every 10 s while a relay is on and 60 s while off. Sped up, boards send
# as rarely as it allows, and at least this much real time apart, so a sped-up
# shed does not flood the broker (24 charging sockets at 60x: 144 samples/s, not 720).
TELEMETRY_ON_S = (2.0, 10.0)
TELEMETRY_OFF_S = (30.0, 60.0)
TELEMETRY_REAL_ON_S = 0.25
TELEMETRY_REAL_OFF_S = 1.0


@dataclass(frozen=True, slots=True)
class BoardPlan:
    board_id: str
    ports: tuple[int, ...]
    transport: Literal["mqtt", "modbus"]
    slave: int | None = None


def plan_boards(sockets: int, transport: Transport) -> list[BoardPlan]:
    """Boards of 12 sockets; `mixed` puts the first board on MQTT, the rest on RS-485."""
    plans = []
    for i, first in enumerate(range(1, sockets + 1, SOCKETS_PER_BOARD)):
        ports = tuple(range(first, min(first + SOCKETS_PER_BOARD, sockets + 1)))
        on_bus = transport == "modbus" or (transport == "mixed" and i > 0)
        if on_bus:
            plans.append(BoardPlan(f"b{i + 1}", ports, "modbus", slave=i + 1))
        else:
            plans.append(BoardPlan(f"b{i + 1}", ports, "mqtt"))
    return plans


@dataclass
class SimShedDevices:
    shed: str
    plans: list[BoardPlan]
    bays: dict[int, BaySensor]
    smoke: EnvSensor
    mqtt_boards: list[SimBoard]
    bus: SimModbusBus | None
    runner: MqttDeviceRunner | None = None
    _mqtt_of: dict[int, SimBoard] = field(default_factory=dict)
    _bus_of: dict[int, tuple[ModbusSimBoard, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._mqtt_of = {p: b for b in self.mqtt_boards for p in b.ports}
        if self.bus is not None:
            for plan in self.plans:
                if plan.slave is not None:
                    board = self.bus.board(plan.slave)
                    self._bus_of.update({p: (board, k) for k, p in enumerate(plan.ports)})

    @property
    def mqtt_devices(self) -> list[Device]:
        return [*self.mqtt_boards, *self.bays.values(), self.smoke]

    @property
    def ports(self) -> list[int]:
        return sorted([*self._mqtt_of, *self._bus_of])

    def mqtt_board(self, port: int) -> SimBoard | None:
        return self._mqtt_of.get(port)

    def _publish(self, device: Device, outs: list[object]) -> None:
        assert self.runner is not None, "start the MQTT runner first"
        self.runner.publish(device, outs)  # type: ignore[arg-type]

    def plug(self, port: int, bike: EBike, now_ms: int) -> None:
        if (board := self._mqtt_of.get(port)) is not None:
            self._publish(board, list(board.plug(port, bike, now_ms)))
        else:
            mb, k = self._bus_of[port]
            mb.plug(k, bike, now_ms)

    def unplug(self, port: int, now_ms: int) -> None:
        if (board := self._mqtt_of.get(port)) is not None:
            self._publish(board, list(board.unplug(port, now_ms)))
        else:
            mb, k = self._bus_of[port]
            mb.unplug(k, now_ms)

    def tap(self, port: int, uid: str, now_ms: int) -> None:
        if (board := self._mqtt_of.get(port)) is not None:
            self._publish(board, list(board.tap_card(port, uid, now_ms)))
        else:
            mb, k = self._bus_of[port]
            mb.tap_card(k, uid, now_ms)

    def true_wh(self, port: int) -> float:
        """Energy that really flowed through the socket so far (ground truth)."""
        if (board := self._mqtt_of.get(port)) is not None:
            return board.true_wh(port)
        mb, k = self._bus_of[port]
        return mb.true_wh(k)

    def set_bay(self, bay: int, occupied: bool, now_ms: int) -> None:
        self._publish(self.bays[bay], list(self.bays[bay].set_occupied(occupied, now_ms)))

    def set_smoke(self, smoke: bool, now_ms: int) -> None:
        self._publish(self.smoke, list(self.smoke.set_smoke(smoke, now_ms)))


def telemetry_intervals(speed: float | None) -> tuple[float, float]:
    """A board's telemetry interval while on and while off, in simulated seconds.

    `speed`: simulated seconds per real second; None for a stepped clock
    (`--speed max`), where every sample costs real time however far apart they are.
    """
    def bounded(limits: tuple[float, float], real_s: float) -> float:
        if speed is None:
            return limits[1]
        return min(limits[1], max(limits[0], real_s * speed))

    return bounded(TELEMETRY_ON_S, TELEMETRY_REAL_ON_S), bounded(TELEMETRY_OFF_S,
                                                                  TELEMETRY_REAL_OFF_S)


def make_shed_devices(
    shed: str, plans: list[BoardPlan], bay_numbers: list[int], rng: random.Random,
    clock: Clock, speed: float | None,
) -> SimShedDevices:
    """`speed`: simulated seconds per real second, None for a stepped clock."""
    start_ms = clock.now_ms()
    interval_on_s, interval_off_s = telemetry_intervals(speed)
    mqtt_boards: list[SimBoard] = []
    bus_boards: list[ModbusSimBoard] = []
    for i, plan in enumerate(plans):
        # every second board's meters start just below the u32 wrap: they wrap during the day
        base = 4_294_966_000 if i % 2 else 0
        if plan.transport == "mqtt":
            mqtt_boards.append(SimBoard(
                shed, plan.board_id, plan.ports, rng=rng, start_ms=start_ms,
                interval_on_s=interval_on_s, interval_off_s=interval_off_s,
                wh_start={p: (base + 37 * p) % U32 for p in plan.ports},
            ))
        else:
            assert plan.slave is not None
            board = ModbusSimBoard(plan.slave, len(plan.ports), rng=rng, start_ms=start_ms)
            for k, p in enumerate(plan.ports):
                board.model.set_register(k + 1, (base + 37 * p) % U32)
            bus_boards.append(board)
    bays = {b: BaySensor(shed, b, rng=rng, start_ms=start_ms) for b in bay_numbers}
    smoke = EnvSensor(shed, "smoke-1", "smoke", rng=rng, start_ms=start_ms, interval_s=300.0)
    bus = SimModbusBus(bus_boards, clock, baud=BUS_BAUD) if bus_boards else None
    return SimShedDevices(shed, plans, bays, smoke, mqtt_boards, bus)
