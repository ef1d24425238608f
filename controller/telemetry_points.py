"""What the controller writes to the time-series store: the schema and the points.

Pure: everything here takes the core's state (or one alarm or reading) and
`now_ms`, and returns points; nothing does I/O or reads a clock. The schema
is documented in docs/telemetry.md; `FIELDS` and `TAGS` are the same table in
code (the dashboard test checks every panel query against them).

Points are small: a socket's tags are made once and shared, and the field
values are a tuple in the order of `FIELDS[measurement]` (None where a value
is unknown, e.g. a socket that never reported its temperature). The writer
thread turns them into line protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.core.config import ShedLayout
from controller.core.fsm import SESSION_STATES, SocketState
from controller.core.model import Alarm
from controller.core.shed import ShedCore
from firmware_bridge.messages import EnvReading

Tags = tuple[tuple[str, str], ...]
Value = float | int | None

SOCKET = "ebshed_socket"
BAY = "ebshed_bay"
SHED = "ebshed_shed"
ALARM = "ebshed_alarm"
ENV = "ebshed_env"

FIELDS: dict[str, tuple[str, ...]] = {
    SOCKET: ("power_w", "energy_wh", "session_wh", "temp_c", "state", "in_session", "relay"),
    BAY: ("occupied",),
    SHED: (
        "power_w",
        "sockets_in_session",
        "sockets_free",
        "sockets_fault",
        "sockets_offline",
        "sessions_open",
        "bays_occupied",
        "bays_free",
        "alarms_active",
        "alarms_unacked",
    ),
    ALARM: ("active", "acked"),
    ENV: ("value", "alarm"),
}
TAGS: dict[str, tuple[str, ...]] = {
    SOCKET: ("shed", "board", "port"),
    BAY: ("shed", "bay", "port"),  # port only for a bay that belongs to a socket
    SHED: ("shed",),
    ALARM: ("shed", "kind", "port", "board", "bay", "sensor"),  # those the alarm has
    ENV: ("shed", "sensor", "kind"),
}

# Socket states as numbers (time-series stores keep numbers, not strings).
STATE_CODES: dict[SocketState, int] = {
    SocketState.OFFLINE: 0,
    SocketState.IDLE: 1,
    SocketState.AUTHORIZED: 2,
    SocketState.CHARGING: 3,
    SocketState.FLOATING: 4,
    SocketState.FINISHING: 5,
    SocketState.FAULT: 6,
    SocketState.DISABLED: 7,
}


@dataclass(frozen=True, slots=True)
class TsPoint:
    """One point: `values` in the order of FIELDS[measurement]; time in ms."""

    measurement: str
    tags: Tags
    values: tuple[Value, ...]
    ts_ms: int

    def fields(self) -> dict[str, float | int]:
        """The fields that have a value."""
        names = FIELDS[self.measurement]
        return {k: v for k, v in zip(names, self.values, strict=True) if v is not None}


class Sampler:
    """Turns the core's state into points; one per shed, its tags made once."""

    def __init__(self, layout: ShedLayout) -> None:
        shed = layout.shed_id
        self.shed = shed
        board_of = layout.board_of()
        self._port_tags: dict[int, Tags] = {
            p: (("board", board_of[p]), ("port", str(p)), ("shed", shed)) for p in layout.ports
        }
        self._bay_tags: dict[int, Tags] = {
            b: ((("bay", str(b)),) + ((("port", str(p)),) if p is not None else ()))
            + (("shed", shed),)
            for b, p in layout.bays.items()
        }
        self._shed_tags: Tags = (("shed", shed),)

    def snapshot(self, core: ShedCore, now_ms: int) -> list[TsPoint]:
        """Every socket, every bay and the shed as they stand at `now_ms`."""
        points: list[TsPoint] = []
        states = dict.fromkeys(SocketState, 0)
        power = 0.0
        sessions = 0
        for p in core.ports.values():
            states[p.state] += 1
            session_wh = 0
            if p.session is not None:
                sessions += 1
                session_wh = p.session.energy_wh
            if p.state is not SocketState.OFFLINE:
                power += p.w
            values = (
                float(p.w),
                p.meter.last_wh,
                session_wh,
                None if p.temp_c is None else float(p.temp_c),
                STATE_CODES[p.state],
                int(p.state in SESSION_STATES),
                None if p.relay is None else int(p.relay),
            )
            points.append(TsPoint(SOCKET, self._port_tags[p.number], values, now_ms))
        occupied = 0
        for b in core.bays.values():
            occupied += b.occupied
            points.append(TsPoint(BAY, self._bay_tags[b.number], (int(b.occupied),), now_ms))
        alarms = core.alarms.values()
        shed_values = (
            round(power, 1),
            sum(states[s] for s in SESSION_STATES),
            states[SocketState.IDLE],
            states[SocketState.FAULT],
            states[SocketState.OFFLINE],
            sessions,
            occupied,
            len(core.bays) - occupied,
            sum(a.active for a in alarms),
            sum(a.acked_ms is None for a in alarms),
        )
        points.append(TsPoint(SHED, self._shed_tags, shed_values, now_ms))
        return points

    def alarm(self, alarm: Alarm, now_ms: int) -> TsPoint:
        """An alarm raised, cleared or acknowledged, at the moment it happened."""
        tags: list[tuple[str, str]] = [("kind", alarm.kind), ("shed", self.shed)]
        for key, value in (
            ("port", alarm.port),
            ("board", alarm.board),
            ("bay", alarm.bay),
            ("sensor", alarm.sensor),
        ):
            if value is not None:
                tags.append((key, str(value)))
        values = (int(alarm.active), int(alarm.acked_ms is not None))
        return TsPoint(ALARM, tuple(sorted(tags)), values, now_ms)

    def env(self, reading: EnvReading, now_ms: int) -> TsPoint:
        """A smoke, temperature or water sensor's report, as it arrived."""
        tags = (("kind", reading.kind), ("sensor", reading.sensor), ("shed", self.shed))
        return TsPoint(ENV, tags, (float(reading.value), int(reading.alarm)), now_ms)
