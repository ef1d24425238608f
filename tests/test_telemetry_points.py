"""The telemetry schema and the points made from the core's state (pure, no I/O)."""

from __future__ import annotations

from controller.core.fsm import SocketState
from controller.core.model import AlarmChanged
from controller.telemetry_buffer import PointBuffer
from controller.telemetry_points import (
    ALARM,
    BAY,
    ENV,
    FIELDS,
    SHED,
    SOCKET,
    STATE_CODES,
    TAGS,
    Sampler,
    TsPoint,
)
from firmware_bridge.messages import BayOccupancy, EnvReading
from tests.core_helpers import ORDER, T0, make_rig


def by_key(points: list[TsPoint]) -> dict[tuple[str, tuple[tuple[str, str], ...]], TsPoint]:
    return {(p.measurement, p.tags): p for p in points}


def test_every_socket_state_has_its_own_code() -> None:
    assert set(STATE_CODES) == set(SocketState)
    assert len(set(STATE_CODES.values())) == len(SocketState)


def test_snapshot_holds_every_socket_bay_and_the_shed() -> None:
    rig = make_rig(ports=4, bays={1: 1, 2: None})
    rig.authorize(2, ORDER)
    rig.run(60, {1: 0.0, 2: 180.0, 3: 0.0, 4: 0.0})
    rig.tel(3, 0.0, temp_c=None)
    rig.feed(BayOccupancy(1, rig.now, True))
    sampler = Sampler(rig.core.layout)

    points = sampler.snapshot(rig.core, rig.now)

    assert [p.measurement for p in points] == [SOCKET] * 4 + [BAY] * 2 + [SHED]
    assert all(p.ts_ms == rig.now for p in points)
    sockets = {dict(p.tags)["port"]: p.fields() for p in points if p.measurement == SOCKET}
    port2 = rig.core.ports[2]
    assert port2.session is not None
    assert sockets["2"] == {
        "power_w": 180.0,
        "energy_wh": port2.meter.last_wh,
        "session_wh": port2.session.energy_wh,
        "temp_c": 30.0,
        "state": STATE_CODES[SocketState.CHARGING],
        "in_session": 1,
        "relay": 1,
    }
    assert port2.session.energy_wh > 0
    assert sockets["1"]["state"] == STATE_CODES[SocketState.IDLE]
    assert sockets["1"]["in_session"] == 0 and sockets["1"]["session_wh"] == 0
    assert "temp_c" not in sockets["3"]  # not reported: left out, not written as 0
    keyed = by_key(points)
    bay1 = keyed[(BAY, (("bay", "1"), ("port", "1"), ("shed", "demo-1")))]
    bay2 = keyed[(BAY, (("bay", "2"), ("shed", "demo-1")))]
    assert bay1.fields() == {"occupied": 1} and bay2.fields() == {"occupied": 0}
    shed = keyed[(SHED, (("shed", "demo-1"),))].fields()
    assert shed["power_w"] == 180.0
    assert shed["sockets_in_session"] == 1 and shed["sessions_open"] == 1
    assert shed["sockets_free"] == 3 and shed["sockets_offline"] == 0
    assert shed["bays_occupied"] == 1 and shed["bays_free"] == 1
    assert shed["alarms_active"] == 0


def test_tags_and_fields_follow_the_schema() -> None:
    rig = make_rig(ports=2, bays={1: 1})
    rig.feed(EnvReading("smoke-1", rig.now, "smoke", 1.0, True))
    sampler = Sampler(rig.core.layout)
    alarms = [a.alarm for a in rig.actions if isinstance(a, AlarmChanged)]
    points = [
        *sampler.snapshot(rig.core, rig.now),
        sampler.alarm(alarms[0], rig.now),
        sampler.env(EnvReading("smoke-1", rig.now, "smoke", 1.0, True), rig.now),
    ]
    for p in points:
        assert len(p.values) == len(FIELDS[p.measurement])
        assert {k for k, _ in p.tags} <= set(TAGS[p.measurement])
        assert [k for k, _ in p.tags] == sorted(k for k, _ in p.tags)  # line protocol order
        assert all(isinstance(v, int | float) for v in p.fields().values())


def test_an_alarm_point_names_what_raised_it() -> None:
    rig = make_rig(ports=2)
    rig.feed(EnvReading("smoke-1", T0, "smoke", 1.0, True))
    alarm = next(a.alarm for a in rig.actions if isinstance(a, AlarmChanged))
    point = Sampler(rig.core.layout).alarm(alarm, T0 + 5)
    assert point.measurement == ALARM and point.ts_ms == T0 + 5
    assert dict(point.tags) == {"kind": "smoke", "sensor": "smoke-1", "shed": "demo-1"}
    assert point.fields() == {"active": 1, "acked": 0}
    shed = Sampler(rig.core.layout).snapshot(rig.core, T0)[-1].fields()
    assert shed["alarms_active"] == 1 and shed["alarms_unacked"] == 1


def test_an_env_reading_becomes_one_point() -> None:
    rig = make_rig(ports=1)
    point = Sampler(rig.core.layout).env(EnvReading("t-1", T0, "temp", 41.5, False), T0)
    assert point.measurement == ENV
    assert dict(point.tags) == {"kind": "temp", "sensor": "t-1", "shed": "demo-1"}
    assert point.fields() == {"value": 41.5, "alarm": 0}


# ---- the buffer ------------------------------------------------------------------


def test_a_full_buffer_drops_the_oldest_and_counts_them() -> None:
    buf: PointBuffer[int] = PointBuffer(5)
    assert buf.put(range(3)) == 0
    assert buf.put(range(3, 8)) == 3
    assert (len(buf), buf.dropped, buf.accepted) == (5, 3, 8)
    assert buf.take(10) == [3, 4, 5, 6, 7]


def test_a_batch_put_back_goes_out_first_and_overflow_is_counted() -> None:
    buf: PointBuffer[int] = PointBuffer(6)
    buf.put(range(4))
    batch = buf.take(3)
    buf.put([10, 11, 12])
    assert buf.put_back(batch) == 1  # 7 points for 6 places: the oldest goes
    assert buf.dropped == 1
    assert buf.take(10) == [1, 2, 3, 10, 11, 12]
