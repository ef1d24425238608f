"""Pure models of a shed's sensors (contract mqtt-device-v1): parking bays and env.

Same shape as `SimBoard`: `tick(now_ms)` returns the messages that fell due,
no clock reads, no I/O. Scripted changes (`set_occupied`, `set_smoke`,
`set_temp`, `set_water`) take an optional `now_ms`: given, the change is
reported at that time and its messages are returned; omitted, the change is
reported by the next `tick`.
"""

from __future__ import annotations

import random
from typing import Any, Literal

from simulators.wire import QOS_RELIABLE, Outgoing, check_id, encode, topic

EnvKind = Literal["smoke", "temp", "water"]
ENV_KINDS: tuple[EnvKind, ...] = ("smoke", "temp", "water")

MAX_BAY_HEARTBEAT_S = 300.0  # contract: on change and at least every 300 s


class _Periodic:
    """Reports every `_period_ms`, and at once after a change (`_dirty`)."""

    _t: int
    _next_ms: int
    _period_ms: int
    _dirty: bool

    def _message(self, t: int) -> Outgoing:
        raise NotImplementedError

    def tick(self, now_ms: int) -> list[Outgoing]:
        now = max(now_ms, self._t)
        self._t = now
        out: list[Outgoing] = []
        while self._next_ms <= now:
            out.append(self._message(self._next_ms))
            self._next_ms += self._period_ms
        if self._dirty:
            self._dirty = False
            out.append(self._message(now))
            self._next_ms = now + self._period_ms
        return out


class BaySensor(_Periodic):
    """A battery-powered parking-bay occupancy sensor (retained, QoS 1)."""

    def __init__(
        self,
        shed: str,
        bay: int,
        *,
        rng: random.Random,
        start_ms: int,
        heartbeat_s: float = 240.0,
        battery_v: float | None = None,
        occupied: bool = False,
    ) -> None:
        self.shed = check_id("shed", shed)
        if bay < 1:
            raise ValueError("bay numbers start at 1")
        if not 0 < heartbeat_s <= MAX_BAY_HEARTBEAT_S:
            raise ValueError("heartbeat_s must be in (0, 300]")
        self.bay = bay
        self.occupied = occupied
        self.clock_offset_ms = 0  # fault injection: device clock minus true time
        self._rng = random.Random(rng.getrandbits(64))
        self.battery_v = self._rng.uniform(3.55, 3.65) if battery_v is None else battery_v
        self._period_ms = round(heartbeat_s * 1000)
        self._t = start_ms
        self._next_ms = start_ms  # announces its state when it starts
        self._dirty = False
        self.messages = 0

    @property
    def topic(self) -> str:
        return topic(self.shed, "bay", self.bay, "occupancy")

    def set_occupied(self, occupied: bool, now_ms: int | None = None) -> list[Outgoing]:
        """A bike arrives (True) or leaves (False); reported only if it changed."""
        out = self.tick(now_ms) if now_ms is not None else []
        if occupied != self.occupied:
            self.occupied = occupied
            self._dirty = True
        if now_ms is not None:
            out += self.tick(now_ms)
        return out

    def set_battery_v(self, battery_v: float) -> None:
        """Fault injection: a weak battery."""
        self.battery_v = battery_v

    def _message(self, t: int) -> Outgoing:
        self.messages += 1
        self.battery_v = max(2.0, self.battery_v - 0.00001)  # a little per radio burst
        payload = {
            "ts": max(0, t + self.clock_offset_ms),
            "occupied": self.occupied,
            "battery_v": round(self.battery_v, 3),
        }
        return Outgoing(self.topic, encode(payload), QOS_RELIABLE, True)


class EnvSensor(_Periodic):
    """A smoke, temperature or water sensor: periodic reports plus one at each change."""

    def __init__(
        self,
        shed: str,
        sensor_id: str,
        kind: EnvKind,
        *,
        rng: random.Random,
        start_ms: int,
        interval_s: float = 60.0,
        ambient_c: float = 25.0,
        alarm_c: float = 57.0,
    ) -> None:
        self.shed = check_id("shed", shed)
        self.sensor_id = check_id("sensor", sensor_id)
        if kind not in ENV_KINDS:
            raise ValueError(f"kind must be one of {ENV_KINDS}")
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.kind: EnvKind = kind
        self.alarm_c = alarm_c  # a temp sensor alarms at or above this
        self.clock_offset_ms = 0
        self._rng = random.Random(rng.getrandbits(64))
        self._period_ms = round(interval_s * 1000)
        self._smoke = False
        self._wet = False
        self._temp_c = ambient_c
        self._t = start_ms
        self._next_ms = start_ms
        self._dirty = False
        self.messages = 0

    @property
    def topic(self) -> str:
        return topic(self.shed, "env", self.sensor_id)

    @property
    def alarm(self) -> bool:
        if self.kind == "smoke":
            return self._smoke
        if self.kind == "water":
            return self._wet
        return self._temp_c >= self.alarm_c

    def set_smoke(self, smoke: bool, now_ms: int | None = None) -> list[Outgoing]:
        return self._change("smoke", "_smoke", smoke, now_ms)

    def set_water(self, wet: bool, now_ms: int | None = None) -> list[Outgoing]:
        return self._change("water", "_wet", wet, now_ms)

    def set_temp(self, temp_c: float, now_ms: int | None = None) -> list[Outgoing]:
        return self._change("temp", "_temp_c", temp_c, now_ms)

    def _change(self, kind: EnvKind, attr: str, value: Any, now_ms: int | None) -> list[Outgoing]:
        if self.kind != kind:
            raise ValueError(f"{self.sensor_id} is a {self.kind} sensor, not {kind}")
        out = self.tick(now_ms) if now_ms is not None else []
        setattr(self, attr, value)
        self._dirty = True
        if now_ms is not None:
            out += self.tick(now_ms)
        return out

    def _value(self) -> float:
        rng = self._rng
        if self.kind == "smoke":  # obscuration, % per metre
            return round(rng.uniform(10.0, 15.0) if self._smoke else abs(rng.gauss(0.0, 0.05)), 2)
        if self.kind == "water":
            return 1.0 if self._wet else 0.0
        return round(self._temp_c + rng.gauss(0.0, 0.1), 1)

    def _message(self, t: int) -> Outgoing:
        self.messages += 1
        payload = {
            "ts": max(0, t + self.clock_offset_ms),
            "kind": self.kind,
            "value": self._value(),
            "alarm": self.alarm,
        }
        return Outgoing(self.topic, encode(payload), QOS_RELIABLE, False)
