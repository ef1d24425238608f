"""Parking-bay and env sensor models: schedules, changes, scripted events."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from simulators.sensors import BaySensor, EnvSensor
from simulators.wire import Outgoing

T0 = 1_795_341_000_000
SHED = "demo-1"


def bay(**kw: Any) -> BaySensor:
    return BaySensor(SHED, 2, rng=random.Random(1), start_ms=T0, **kw)


def env(kind: Any, **kw: Any) -> EnvSensor:
    return EnvSensor(SHED, f"{kind}-1", kind, rng=random.Random(1), start_ms=T0, **kw)


def run(device: BaySensor | EnvSensor, until_ms: int, every_ms: int = 1000) -> list[Outgoing]:
    out: list[Outgoing] = []
    t = T0
    while t < until_ms:
        t = min(until_ms, t + every_ms)
        out += device.tick(t)
    return out


def test_bay_announces_itself_then_heartbeats_within_300_s() -> None:
    sensor = bay()
    out = sensor.tick(T0)
    assert len(out) == 1
    assert out[0].topic == "ebs/v1/demo-1/bay/2/occupancy"
    assert (out[0].qos, out[0].retain) == (1, True)
    first = out[0].json()
    assert first["ts"] == T0
    assert first["occupied"] is False
    assert 3.5 < first["battery_v"] < 3.7
    ts = [o.json()["ts"] for o in out + run(sensor, T0 + 3_600_000, every_ms=7000)]
    gaps = {b - a for a, b in itertools.pairwise(ts)}
    assert gaps == {240_000}


def test_bay_reports_a_change_at_once_and_only_a_change() -> None:
    sensor = bay(heartbeat_s=300)
    sensor.tick(T0)
    out = sensor.set_occupied(True, T0 + 12_345)
    assert [o.json() for o in out] == [
        {"ts": T0 + 12_345, "occupied": True, "battery_v": out[0].json()["battery_v"]}
    ]
    assert sensor.set_occupied(True, T0 + 20_000) == []
    # the heartbeat timer restarts at the change
    assert run(sensor, T0 + 12_345 + 299_999) == []
    (beat,) = sensor.tick(T0 + 12_345 + 300_000)
    assert beat.json()["occupied"] is True


def test_bay_change_without_a_time_is_reported_by_the_next_tick() -> None:
    sensor = bay()
    sensor.tick(T0)
    assert sensor.set_occupied(True) == []
    (msg,) = sensor.tick(T0 + 500)
    assert msg.json()["ts"] == T0 + 500
    assert msg.json()["occupied"] is True


def test_bay_battery_can_be_made_weak_and_heartbeat_is_bounded() -> None:
    sensor = bay(battery_v=3.6)
    sensor.set_battery_v(2.9)
    (msg,) = sensor.tick(T0)
    assert msg.json()["battery_v"] == pytest.approx(2.9, abs=0.001)
    with pytest.raises(ValueError, match="300"):
        bay(heartbeat_s=301)
    with pytest.raises(ValueError, match="bay"):
        BaySensor(SHED, 0, rng=random.Random(1), start_ms=T0)


def test_bay_catches_up_missed_heartbeats_at_their_own_times() -> None:
    sensor = bay(heartbeat_s=100)
    out = sensor.tick(T0 + 350_000)
    assert [o.json()["ts"] for o in out] == [T0, T0 + 100_000, T0 + 200_000, T0 + 300_000]


def test_smoke_alarm_is_sent_at_once_and_then_periodically() -> None:
    sensor = env("smoke")
    (first,) = sensor.tick(T0)
    assert first.topic == "ebs/v1/demo-1/env/smoke-1"
    assert (first.qos, first.retain) == (1, False)
    quiet = first.json()
    assert quiet["kind"] == "smoke"
    assert quiet["alarm"] is False
    assert quiet["value"] < 1.0
    out = sensor.set_smoke(True, T0 + 5000)
    alarm = out[0].json()
    assert alarm == {"ts": T0 + 5000, "kind": "smoke", "value": alarm["value"], "alarm": True}
    assert alarm["value"] >= 10.0
    out = run(sensor, T0 + 5000 + 180_000, every_ms=10_000)
    assert [o.json()["ts"] for o in out][-3:] == [T0 + 65_000, T0 + 125_000, T0 + 185_000]
    assert all(o.json()["alarm"] for o in out)
    assert sensor.set_smoke(False, T0 + 200_000)[0].json()["alarm"] is False


def test_temp_sensor_follows_the_script_and_alarms_at_its_threshold() -> None:
    sensor = env("temp", ambient_c=31.0)
    assert sensor.tick(T0)[0].json()["value"] == pytest.approx(31.0, abs=0.5)
    out = sensor.set_temp(45.0, T0 + 1000)
    assert out[0].json()["alarm"] is False
    assert out[0].json()["value"] == pytest.approx(45.0, abs=0.5)
    out = sensor.set_temp(62.0, T0 + 2000)
    assert out[0].json()["alarm"] is True
    assert sensor.alarm


def test_water_sensor_and_kind_checks() -> None:
    sensor = env("water")
    sensor.tick(T0)
    assert sensor.set_water(True, T0 + 1)[0].json() == {
        "ts": T0 + 1,
        "kind": "water",
        "value": 1.0,
        "alarm": True,
    }
    with pytest.raises(ValueError, match="water sensor"):
        sensor.set_smoke(True)
    with pytest.raises(ValueError, match="kind"):
        env("gas")
    with pytest.raises(ValueError, match="sensor"):
        EnvSensor(SHED, "Smoke 1", "smoke", rng=random.Random(1), start_ms=T0)


def test_scripted_change_without_a_time_waits_for_the_tick() -> None:
    sensor = env("smoke")
    sensor.tick(T0)
    assert sensor.set_smoke(True) == []
    (msg,) = sensor.tick(T0 + 700)
    assert msg.json()["alarm"] is True
    assert msg.json()["ts"] == T0 + 700


def test_sensor_clock_offset() -> None:
    sensor = bay()
    sensor.clock_offset_ms = -5000
    assert sensor.tick(T0)[0].json()["ts"] == T0 - 5000
