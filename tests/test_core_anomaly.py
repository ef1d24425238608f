"""Charge-curve anomalies on the simulators' curves, through the pure core.

Faulty chargers and packs (simulators/ebike.py) each raise their anomaly: an
alarm for staff on the socket, translated on the board, and a flag on the
resident's session record. Healthy bikes on a 24-socket shed over a simulated
month raise none.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable

import pytest

from api.web.staff_i18n import ALARM_KINDS, alarm_detail, label
from controller.core.anomaly import ANOMALY_KINDS, AnomalyDetector
from controller.core.config import ConfigError, RuleConfig
from simulators import ebike
from simulators.ebike import EBike
from tests.anomaly_shed import AnomalyShed

HOUR = 3600

FAULTY: list[tuple[Callable[..., EBike], str]] = [
    (ebike.no_taper_charger, "anomaly_no_taper"),
    (ebike.unstable_charger, "anomaly_unstable_power"),
    (ebike.leaky_pack, "anomaly_energy_excess"),
    (ebike.worn_plug, "anomaly_temp_rise"),
    (ebike.no_battery, "anomaly_no_load"),
]


@pytest.mark.parametrize(("make", "kind"), FAULTY, ids=[k for _, k in FAULTY])
@pytest.mark.parametrize("seed", [1, 2])
def test_each_faulty_curve_raises_its_anomaly(
    make: Callable[..., EBike], kind: str, seed: int
) -> None:
    rng = random.Random(seed)
    shed = AnomalyShed(ports=4, step_s=10, seed=seed)
    session = shed.plug(1, make(rng))
    healthy = shed.plug(2, ebike.random_bike(rng))
    shed.run(13 * HOUR)

    raised = [(k, port, detail) for _, k, port, detail in shed.anomalies]
    assert kind in [k for k, _, _ in raised], raised
    assert all(port == 1 for _, port, _ in raised), "the healthy bike on socket 2 raised one"
    closed = {s.id: s for s in shed.closed}
    assert kind in closed[session.id].flags  # what the resident's record shows
    assert not closed[healthy.id].flags & set(ANOMALY_KINDS)
    # Staff read it in their language: a known kind and a translated detail.
    for k, _, detail in raised:
        assert label(ALARM_KINDS, k, "zh") != k
        zh, en = alarm_detail(detail, "zh"), alarm_detail(detail, "en")
        assert zh != detail and en != zh, detail
    # Each kind once per session, and cleared when the session closed.
    assert len(raised) == len({k for k, _, _ in raised})
    anomaly_alarms = [a for a in shed.core.alarms.values() if a.kind in ANOMALY_KINDS]
    assert anomaly_alarms and not any(a.active for a in anomaly_alarms)
    # An anomaly is a warning, not a stop: the session ended on its own rules.
    assert closed[session.id].end_reason not in ANOMALY_KINDS


def test_thresholds_come_from_the_rules() -> None:
    rng = random.Random(3)
    quick = RuleConfig(anomaly_flat_s=HOUR)
    shed = AnomalyShed(ports=2, step_s=10, rules=quick)
    start = shed.plug(1, ebike.no_taper_charger(rng)).started_ms
    shed.run(2 * HOUR)
    found = [(ms, k) for ms, k, _, _ in shed.anomalies]
    assert [k for _, k in found] == ["anomaly_no_taper"]
    assert HOUR * 1000 <= found[0][0] - start <= HOUR * 1000 + 120_000

    default = AnomalyShed(ports=2, step_s=10)
    default.plug(1, ebike.no_taper_charger(random.Random(3)))
    default.run(2 * HOUR)
    assert default.anomalies == []  # 6 h by default


@pytest.mark.parametrize(
    "bad",
    [
        {"anomaly_flat_band": 1.5},
        {"anomaly_flat_s": 0},
        {"anomaly_jump_count": 0},
        {"anomaly_energy_factor": 0.5},
        {"anomaly_temp_window_s": 10},
        {"anomaly_no_load_s": -1},
    ],
)
def test_bad_anomaly_rules_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError) as err:
        RuleConfig(**bad).validate()  # type: ignore[arg-type]
    assert next(iter(bad)) in str(err.value)


def test_detector_reports_each_kind_once_and_keeps_bounded_memory() -> None:
    rules = RuleConfig()
    d = AnomalyDetector(rules, 0)
    now, found = 0, []
    for minute in range(1, 24 * 60):  # a day of an oscillating 40 <-> 240 W draw
        for i in range(12):
            d.feed(240.0 if i % 2 else 40.0)
        now = minute * 60_000
        found += d.roll(now, 30.0, 0.0)
    assert [a.kind for a in found] == ["anomaly_unstable_power"]
    assert len(d._jump_minutes) <= rules.anomaly_jump_window_s // 60 + 1
    assert len(d._temps) <= rules.anomaly_temp_window_s // 60 + 1


@pytest.mark.parametrize("resumed", [False, True])
@pytest.mark.parametrize(
    ("w", "kind"), [(10.0, "anomaly_no_load"), (60.0, "anomaly_energy_excess")]
)
def test_a_session_restored_mid_charge_is_not_judged_on_what_it_missed(
    resumed: bool, w: float, kind: str
) -> None:
    # After a restart the shed restores a session that took 1 kWh already and now
    # floats (10 W) or tapers (60 W): neither "no battery" nor "far more energy than
    # the pack" for what happened before; a session watched from its start is.
    d = AnomalyDetector(RuleConfig(), 0, resumed=resumed)
    found = []
    for minute in range(1, 31):
        for _ in range(6):
            d.feed(w)
        found += d.roll(minute * 60_000, 30.0, 1000.0 + minute)
    assert [a.kind for a in found] == ([] if resumed else [kind])


def test_a_socket_past_the_overtemp_trip_is_the_trip_s_not_an_anomaly() -> None:
    d = AnomalyDetector(RuleConfig(), 0)
    d.feed(200.0)
    assert d.roll(60_000, 30.0, 10.0) == []
    d.feed(200.0)
    assert d.roll(120_000, 80.0, 14.0) == []  # a hot reading: the trip stops it
    d.feed(200.0)
    assert [a.kind for a in d.roll(180_000, 45.0, 18.0)] == ["anomaly_temp_rise"]


def test_healthy_month_of_a_24_socket_shed_raises_no_false_alarm() -> None:
    shed = AnomalyShed(ports=24, step_s=60, seed=2026)
    started = time.perf_counter()
    shed.run(30 * 24 * HOUR, shed.healthy_arrival)
    elapsed = time.perf_counter() - started
    ends = Counter(s.end_reason for s in shed.closed)
    print(
        f"\nhealthy month, 24 sockets: {len(shed.closed)} sessions, "
        f"{len(shed.anomalies)} anomaly alarms, ends {dict(ends)}, "
        f"simulated in {elapsed:.1f} s"
    )
    assert len(shed.closed) > 24 * 30  # more than one session per socket and day
    assert ends["full"] > 0.9 * len(shed.closed)  # healthy bikes end full
    assert shed.anomalies == []
    assert shed.other_alarms == []
