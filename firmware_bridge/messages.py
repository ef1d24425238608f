"""Typed port events and commands shared by every transport.

The MQTT adapter and the Modbus RTU adapter both turn device traffic into these
values, and turn these commands into device traffic; the controller never
knows which transport a port uses. Plain frozen dataclasses with slots: they
are created for every telemetry sample, so they stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EventType = Literal["overcurrent", "overtemp", "relay_fault", "lease_expired", "card", "button"]
EVENT_TYPES: frozenset[str] = frozenset(
    ("overcurrent", "overtemp", "relay_fault", "lease_expired", "card", "button")
)
EnvKind = Literal["smoke", "temp", "water"]
ENV_KINDS: frozenset[str] = frozenset(("smoke", "temp", "water"))
CommandOp = Literal["on", "off", "renew"]


@dataclass(frozen=True, slots=True)
class Telemetry:
    """One meter sample of one port. `wh` is the cumulative u32 register."""

    port: int
    ts: int  # device clock, ms since the Unix epoch
    seq: int  # u32 per-port counter, resets to 0 on board reboot
    v: float
    a: float
    w: float
    wh: int
    relay: bool
    temp_c: float | None = None


@dataclass(frozen=True, slots=True)
class PortEvent:
    port: int
    ts: int
    type: EventType
    card_uid: str | None = None  # upper-case hex, for type == "card"
    action: str | None = None  # for type == "button"


@dataclass(frozen=True, slots=True)
class CmdAck:
    port: int
    id: str
    ok: bool
    relay: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class BoardStatus:
    board: str
    online: bool
    fw: str | None = None
    ports: tuple[int, ...] = ()
    ts: int | None = None


@dataclass(frozen=True, slots=True)
class BayOccupancy:
    bay: int
    ts: int
    occupied: bool
    battery_v: float | None = None


@dataclass(frozen=True, slots=True)
class EnvReading:
    sensor: str
    ts: int
    kind: EnvKind
    value: float
    alarm: bool


DeviceMessage = Telemetry | PortEvent | CmdAck | BoardStatus | BayOccupancy | EnvReading


@dataclass(frozen=True, slots=True)
class PortCommand:
    """A relay command for one port. `id` makes retries safe (boards dedupe)."""

    port: int
    id: str
    op: CommandOp
    lease_s: int | None = None  # for "on" and "renew"
    max_w: int | None = None  # for "on"
