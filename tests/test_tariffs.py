"""Tariff engine: hand-computed bills, bad definitions, config round trips, properties.

Plain synchronous tests against the pure core; time is passed in as int ms.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.tariffs import (
    Bill,
    PowerTier,
    Tariff,
    TariffError,
    TouBand,
    Usage,
    bill_from_dict,
    bill_to_dict,
    compute_bill,
    default_tariff,
    describe,
    minutes_affordable,
    prepaid_outcome,
    tariff_from_dict,
    tariff_to_dict,
)

MIN = 60_000
HOUR = 60 * MIN
CST = timezone(timedelta(hours=8))


def local_ms(day: int, hour: int, minute: int = 0, second: int = 0) -> int:
    """Milliseconds since the epoch of a local (UTC+8) time in March 2024."""
    return int(datetime(2024, 3, day, hour, minute, second, tzinfo=CST).timestamp() * 1000)


def flat(fen_per_hour: str, **extra: Any) -> Tariff:
    return Tariff(
        id="flat",
        version=1,
        name="flat",
        kind="power_tier",
        tiers=(PowerTier(1100, Decimal(fen_per_hour)),),
        **extra,
    )


TIERED = Tariff(
    id="tiered",
    version=3,
    name="按功率",
    kind="power_tier",
    tiers=(
        PowerTier(200, Decimal("25")),
        PowerTier(400, Decimal("33.33")),
        PowerTier(1100, Decimal("50")),
    ),
)

TOU = Tariff(
    id="tou",
    version=1,
    name="峰谷",
    kind="energy",
    bands=(TouBand(480, 1320, Decimal("120")), TouBand(1320, 480, Decimal("40"))),
    service_fen_per_kwh=Decimal("80"),
)


def steady(start_ms: int, w: float, minutes: int, every_ms: int = MIN) -> Usage:
    """A usage with one sample of `w` every `every_ms`, for `minutes` minutes."""
    usage = Usage(start_ms)
    for t in range(start_ms, start_ms + minutes * MIN, every_ms):
        usage.add(t, w, 0)
    usage.extend_to(start_ms + minutes * MIN)
    return usage


# --------------------------------------------------------------------------- time pricing


def test_default_tariff_four_hours_at_150_w_is_one_yuan() -> None:
    start = local_ms(5, 20)
    bill = compute_bill(
        default_tariff(), steady(start, 150.0, 240, every_ms=30_000), start + 4 * HOUR
    )
    assert bill.total_fen == 100
    assert [(line.code, line.quantity, line.unit, line.amount_fen) for line in bill.lines] == [
        ("time_tier_1", 240, "min", 100)
    ]


def test_61_seconds_is_two_started_minutes() -> None:
    tariff = flat("60")  # 1 fen a minute
    usage = Usage(0)
    usage.add(0, 150.0, 0)
    assert compute_bill(tariff, usage, 0).total_fen == 0
    assert compute_bill(tariff, usage, 1).total_fen == 1
    assert compute_bill(tariff, usage, 60_000).total_fen == 1
    assert usage.started_minutes(61_000) == 2
    assert compute_bill(tariff, usage, 61_000).total_fen == 2


def test_billed_by_the_started_minute_never_the_started_hour() -> None:
    bill = compute_bill(default_tariff(), steady(0, 150.0, 61), 61 * MIN)
    assert bill.total_fen == 25  # 61 x 25/60 = 25.42, not 2 started hours = 50


def test_tier_switch_mid_session() -> None:
    usage = Usage(0)
    usage.add(0, 150.0, 0)
    usage.add(2 * HOUR, 300.0, 0)  # exactly on a minute boundary: minute 120 is tier 2
    usage.add(3 * HOUR, 500.0, 0)
    bill = compute_bill(TIERED, usage, 4 * HOUR)
    # exact: 120 x 25/60 = 50, 60 x 33.33/60 = 33.33, 60 x 50/60 = 50 -> 133.33
    assert [(line.code, line.quantity, line.amount_fen) for line in bill.lines] == [
        ("time_tier_1", 120, 50),
        ("time_tier_2", 60, 33),
        ("time_tier_3", 60, 50),
    ]
    assert bill.total_fen == 133


def test_one_pulse_lifts_only_its_own_minute() -> None:
    usage = Usage(0)
    for s in range(0, 600, 10):
        usage.add(s * 1000, 520.0 if s == 210 else 150.0, 0)
    bill = compute_bill(TIERED, usage, 10 * MIN)
    assert {line.code: line.quantity for line in bill.lines} == {"time_tier_1": 9, "time_tier_3": 1}


def test_minutes_without_samples_count_at_the_last_known_power() -> None:
    usage = Usage(0)
    usage.add(0, 300.0, 0)
    assert compute_bill(TIERED, usage, 30 * MIN).amount("time_tier_2") == 17  # 30 x 0.5555
    usage.extend_to(30 * MIN)
    assert compute_bill(TIERED, usage, 30 * MIN).lines[0].quantity == 30


def test_power_falls_the_minute_still_carries_the_power_it_started_with() -> None:
    usage = Usage(0)
    usage.add(0, 300.0, 0)
    usage.add(90_000, 100.0, 0)  # minute 1 began at 300 W
    usage.add(120_000, 100.0, 0)  # exactly at minute 2's start: 100 W from there on
    bill = compute_bill(TIERED, usage, 3 * MIN)
    assert {line.code: line.quantity for line in bill.lines} == {"time_tier_1": 1, "time_tier_2": 2}


def test_before_the_first_sample_power_is_taken_as_zero() -> None:
    usage = Usage(0)
    usage.extend_to(5 * MIN)
    assert [line.code for line in compute_bill(TIERED, usage, 5 * MIN).lines] == ["time_tier_1"]


def test_readings_above_the_top_tier_bill_at_the_top_tier() -> None:
    usage = Usage(0)
    usage.add(0, 2000.0, 0)
    assert compute_bill(TIERED, usage, 60 * MIN).amount("time_tier_3") == 50


def test_a_later_higher_sample_in_the_same_minute_never_lowers_the_total() -> None:
    # Rounding each line on its own would give 1+1 = 2 fen, then 0+1 = 1 fen when the
    # current minute moves up to tier 2. The running-total rounding gives 1, then 2.
    usage = Usage(0)
    usage.add(0, 300.0, 0)
    usage.add(MIN, 150.0, 0)
    now = 2 * MIN + 30_000
    first = compute_bill(TIERED, usage, now)
    usage.add(now + 10_000, 300.0, 0)
    second = compute_bill(TIERED, usage, now + 10_000)
    assert (first.total_fen, second.total_fen) == (1, 2)
    assert [line.amount_fen for line in first.lines] == [1, 0]


def test_start_fee_and_free_minutes() -> None:
    tariff = flat("60", start_fee_fen=50, free_minutes=10)
    usage = Usage(0)
    usage.add(0, 150.0, 0)
    assert compute_bill(tariff, usage, 0).total_fen == 50
    assert compute_bill(tariff, usage, 10 * MIN).total_fen == 50
    bill = compute_bill(tariff, usage, 30 * MIN)
    assert bill.total_fen == 70
    assert [(line.code, line.quantity, line.amount_fen) for line in bill.lines] == [
        ("start_fee", 1, 50),
        ("free_minutes", 10, 0),
        ("time_tier_1", 20, 20),
    ]


def test_cost_so_far_matches_the_bill() -> None:
    usage = steady(0, 250.0, 100, every_ms=7_000)
    for now in (0, 59_999, 60_001, 100 * MIN, 130 * MIN):
        assert usage.cost_so_far_fen(TIERED, now) == compute_bill(TIERED, usage, now).total_fen
    assert usage.cost_so_far_fen(TIERED) == compute_bill(TIERED, usage, usage.last_ms).total_fen


# --------------------------------------------------------------------------- energy pricing


def test_time_of_use_band_across_midnight_in_china_time() -> None:
    usage = Usage(local_ms(5, 21))
    usage.add(local_ms(5, 21, 30), 300.0, 150)  # 峰 (13:30 UTC)
    usage.add(local_ms(5, 22, 30), 300.0, 200)  # 谷
    usage.add(local_ms(6, 0, 30), 300.0, 300)  # 谷, next local day
    bill = compute_bill(TOU, usage, local_ms(6, 0, 30))
    # 0.15 kWh x 120 = 18; 0.5 kWh x 40 = 20; 0.65 kWh x 80 = 52
    assert [(line.code, line.quantity, line.amount_fen) for line in bill.lines] == [
        ("energy_peak", Decimal("0.150"), 18),
        ("energy_valley", Decimal("0.500"), 20),
        ("service_fee", Decimal("0.650"), 52),
    ]
    assert bill.total_fen == 90


def test_energy_goes_to_the_band_of_its_sample_time() -> None:
    usage = Usage(local_ms(5, 21))
    usage.add(local_ms(5, 22) - 1, 300.0, 1000)
    usage.add(local_ms(5, 22), 300.0, 1000)
    bill = compute_bill(TOU, usage, local_ms(5, 22))
    assert (bill.amount("energy_peak"), bill.amount("energy_valley")) == (120, 40)


def test_three_and_four_band_rates_are_named_sharp_peak_flat_valley() -> None:
    four = Tariff(
        id="four",
        version=1,
        name="尖峰平谷",
        kind="energy",
        bands=(
            TouBand(0, 480, Decimal("30")),
            TouBand(480, 600, Decimal("80")),
            TouBand(600, 720, Decimal("150")),
            TouBand(720, 1080, Decimal("100")),
            TouBand(1080, 1440, Decimal("80")),
        ),
    )
    usage = Usage(local_ms(5, 0))
    for hour in (1, 9, 11, 13, 19):
        usage.add(local_ms(5, hour), 200.0, 1000)
    bill = compute_bill(four, usage, local_ms(5, 19))
    assert [(line.code, line.amount_fen) for line in bill.lines] == [
        ("energy_sharp", 150),
        ("energy_peak", 100),
        ("energy_flat", 160),
        ("energy_valley", 30),
    ]


def test_energy_in_the_free_minutes_is_free() -> None:
    tariff = Tariff(
        id="e",
        version=1,
        name="e",
        kind="energy",
        bands=(TouBand(0, 1440, Decimal("100")),),
        service_fen_per_kwh=Decimal("50"),
        free_minutes=10,
    )
    usage = Usage(0)
    usage.add(5 * MIN, 300.0, 100)
    usage.add(10 * MIN - 1, 300.0, 100)
    usage.add(10 * MIN, 300.0, 100)  # minute 10 is not free
    bill = compute_bill(tariff, usage, 11 * MIN)
    assert [(line.code, line.quantity, line.amount_fen) for line in bill.lines] == [
        ("free_minutes", Decimal("0.200"), 0),
        ("energy", Decimal("0.100"), 10),
        ("service_fee", Decimal("0.100"), 5),
    ]


# --------------------------------------------------------------------------- caps and prepaid


def test_daily_cap_applies_per_local_day() -> None:
    tariff = flat("60", start_fee_fen=50, daily_cap_fen=300)
    start = local_ms(5, 20)
    bill = compute_bill(tariff, steady(start, 200.0, 720), start + 12 * HOUR)
    # 5 March: 50 + 240 = 290 (under the cap); 6 March: 480 -> capped at 300
    assert [(line.code, line.quantity, line.amount_fen) for line in bill.lines] == [
        ("start_fee", 1, 50),
        ("time_tier_1", 720, 720),
        ("daily_cap_discount", 1, -180),
    ]
    assert bill.total_fen == 590


def test_start_fee_counts_towards_the_first_days_cap() -> None:
    tariff = flat("60", start_fee_fen=50, daily_cap_fen=300)
    start = local_ms(5, 16)
    assert compute_bill(tariff, steady(start, 200.0, 360), start + 6 * HOUR).total_fen == 300


def test_prepaid_cap_line() -> None:
    usage = steady(0, 150.0, 480)
    bill = compute_bill(default_tariff(), usage, 8 * HOUR, prepaid_fen=150)
    assert (bill.total_fen, bill.amount("prepaid_cap")) == (150, -50)
    assert compute_bill(default_tariff(), usage, 8 * HOUR, prepaid_fen=500).total_fen == 200


def test_prepaid_outcome() -> None:
    assert prepaid_outcome(120, 200) == (120, 80)
    assert prepaid_outcome(250, 200) == (200, 0)
    assert prepaid_outcome(0, 0) == (0, 0)
    with pytest.raises(ValueError, match="prepaid_fen"):
        prepaid_outcome(10, -1)


def test_minutes_affordable() -> None:
    assert minutes_affordable(default_tariff(), 100, 150.0) == 241  # 241 min bill 100.42 -> 100
    assert minutes_affordable(default_tariff(), 1000, 150.0) == 1440  # the 24 h hard cut
    assert minutes_affordable(TIERED, 100, 300.0) == 180
    assert minutes_affordable(TIERED, 100, 500.0) == 120
    assert minutes_affordable(flat("60", start_fee_fen=50, free_minutes=10), 100, 100.0) == 60
    assert minutes_affordable(flat("60", start_fee_fen=50), 40, 100.0) == 0
    assert minutes_affordable(flat("60", daily_cap_fen=300), 300, 100.0) == 1440
    assert minutes_affordable(TOU, 200, 500.0) == 120  # at the 峰 rate: 0.5 kWh/h x 2 元


# --------------------------------------------------------------------------- definitions


def _tiers(*pairs: tuple[int, str]) -> tuple[PowerTier, ...]:
    return tuple(PowerTier(w, Decimal(rate)) for w, rate in pairs)


def _bands(*triples: tuple[int, int, str]) -> tuple[TouBand, ...]:
    return tuple(TouBand(s, e, Decimal(rate)) for s, e, rate in triples)


BAD_TARIFFS: list[tuple[str, dict[str, Any]]] = [
    ("bad_id", {"id": ""}),
    ("bad_version", {"version": 0}),
    ("bad_kind", {"kind": "flat"}),
    ("no_tiers", {"tiers": ()}),
    (
        "too_many_tiers",
        {"tiers": _tiers((100, "1"), (200, "2"), (300, "3"), (400, "4"), (500, "5"))},
    ),
    ("tiers_not_ascending", {"tiers": _tiers((400, "25"), (200, "30"))}),
    ("tier_rates_decreasing", {"tiers": _tiers((200, "30"), (400, "25"))}),
    ("bad_tier", {"tiers": _tiers((0, "25"))}),
    ("negative_rate", {"tiers": _tiers((1100, "-1"))}),
    ("bad_rate", {"tiers": (PowerTier(1100, 25.0),)}),  # type: ignore[arg-type]
    ("bad_rate", {"tiers": _tiers((1100, "NaN"))}),
    ("bands_not_allowed", {"bands": _bands((0, 1440, "50"))}),
    ("service_fee_not_allowed", {"service_fen_per_kwh": Decimal(10)}),
    ("bad_start_fee", {"start_fee_fen": -1}),
    ("bad_free_minutes", {"free_minutes": 1441}),
    ("bad_daily_cap", {"daily_cap_fen": 0}),
    ("start_fee_above_cap", {"start_fee_fen": 500, "daily_cap_fen": 300}),
    ("bad_tz_offset", {"tz_offset_minutes": 900}),
    ("no_bands", {"kind": "energy", "tiers": ()}),
    (
        "tiers_not_allowed",
        {"kind": "energy", "bands": _bands((0, 1440, "50"))},
    ),
    (
        "bands_overlap",
        {"kind": "energy", "tiers": (), "bands": _bands((480, 1320, "120"), (1200, 480, "40"))},
    ),
    (
        "bands_gap",
        {"kind": "energy", "tiers": (), "bands": _bands((480, 1320, "120"), (1380, 480, "40"))},
    ),
    ("bad_band", {"kind": "energy", "tiers": (), "bands": _bands((480, 480, "120"))}),
    ("bad_band", {"kind": "energy", "tiers": (), "bands": _bands((0, 1441, "120"))}),
    (
        "too_many_band_rates",
        {
            "kind": "energy",
            "tiers": (),
            "bands": _bands(*((k * 288, k * 288 + 288, str(k)) for k in range(5))),
        },
    ),
    (
        "too_many_bands",
        {
            "kind": "energy",
            "tiers": (),
            "bands": _bands(*((h * 60, h * 60 + 60, "1") for h in range(24))),
        },
    ),
]


@pytest.mark.parametrize(("code", "change"), BAD_TARIFFS)
def test_bad_tariff_definitions_are_refused_with_a_code(code: str, change: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "id": "x",
        "version": 1,
        "name": "x",
        "kind": "power_tier",
        "tiers": _tiers((1100, "25")),
    }
    with pytest.raises(TariffError) as caught:
        Tariff(**(fields | change))
    assert caught.value.code == code


@pytest.mark.parametrize("tariff", [default_tariff(), TIERED, TOU, flat("60", daily_cap_fen=500)])
def test_dict_round_trip(tariff: Tariff) -> None:
    as_dict = tariff_to_dict(tariff)
    assert tariff_from_dict(as_dict) == tariff
    assert "daily_cap_fen" in as_dict or tariff.daily_cap_fen is None


def test_from_dict_reads_config_strings() -> None:
    tariff = tariff_from_dict(
        {
            "id": "tou",
            "version": 1,
            "name": "峰谷",
            "kind": "energy",
            "bands": [
                {"start_minute": "08:00", "end_minute": "22:00", "fen_per_kwh": "120"},
                {"start_minute": 1320, "end_minute": "08:00", "fen_per_kwh": 40},
            ],
            "service_fen_per_kwh": "80",
        }
    )
    assert tariff == TOU
    assert tariff_to_dict(TOU)["bands"][0] == {
        "start_minute": "08:00",
        "end_minute": "22:00",
        "fen_per_kwh": "120",
    }


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"tiers": [{"max_w": 1100, "fen_per_hour": 25.0}]}, "bad_rate"),
        ({"tiers": [{"max_w": 1100, "fen_per_hour": "abc"}]}, "bad_rate"),
        ({"tiers": [{"max_w": 1100}]}, "missing_field"),
        ({"tiers": [{"max_w": 1100, "fen_per_hour": "25", "colour": "red"}]}, "unknown_field"),
        ({"daily_cap": 300}, "unknown_field"),
        ({"version": "1"}, "bad_field"),
        ({"kind": None}, "bad_kind"),
    ],
)
def test_from_dict_refuses_bad_config(change: dict[str, Any], code: str) -> None:
    base = tariff_to_dict(default_tariff())
    with pytest.raises(TariffError) as caught:
        tariff_from_dict(base | change)
    assert caught.value.code == code


def test_from_dict_needs_the_identity_fields() -> None:
    with pytest.raises(TariffError) as caught:
        tariff_from_dict({"id": "x", "version": 1, "kind": "power_tier"})
    assert caught.value.code == "missing_field"


# --------------------------------------------------------------------------- posted price


def test_describe_default() -> None:
    summary = describe(default_tariff())
    assert (summary["summary_zh"], summary["summary_en"]) == ("1元/4小时", "1 yuan per 4 h")


def test_describe_power_tiers() -> None:
    summary = describe(TIERED)
    assert [item["zh"] for item in summary["items"]] == [
        "0-200W 1元/4小时",
        "200-400W 1元/3小时",
        "400-1100W 1元/2小时",
    ]
    assert summary["items"][0]["en"] == "0-200 W: 1 yuan per 4 h"


def test_describe_extras_and_energy() -> None:
    extras = describe(flat("40", start_fee_fen=50, free_minutes=10, daily_cap_fen=500))
    assert extras["summary_zh"] == "1元/2.5小时，起步费 0.5元，前10分钟免费，每日封顶 5元"
    assert (
        describe(TOU)["summary_zh"]
        == "峰 08:00-22:00 1.2元/度，谷 22:00-08:00 0.4元/度，服务费 0.8元/度"
    )
    assert describe(flat("0"))["summary_en"] == "free"


# --------------------------------------------------------------------------- usage contract


def test_usage_refuses_time_going_backwards_and_bad_samples() -> None:
    usage = Usage(0)
    usage.add(10_000, 100.0, 5)
    with pytest.raises(ValueError, match="before"):
        usage.add(9_999, 100.0, 0)
    with pytest.raises(ValueError, match="before"):
        usage.extend_to(9_999)
    with pytest.raises(ValueError, match="wh_delta"):
        usage.add(20_000, 100.0, -1)
    with pytest.raises(ValueError, match="wh_delta"):
        usage.add(20_000, 100.0, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="wh_delta"):
        usage.add(20_000, 100.0, True)  # a bool is no count of Wh
    for bad_w in (math.nan, math.inf, -0.5):
        with pytest.raises(ValueError, match="power"):
            usage.add(20_000, bad_w, 0)
    assert (usage.total_wh, usage.last_ms) == (5, 10_000)


def test_usage_and_bill_state_round_trip_through_json() -> None:
    usage = Usage(local_ms(5, 21))
    usage.add(local_ms(5, 21, 0, 30), 300.0, 150)
    usage.add(local_ms(5, 22, 30), 120.0, 200)
    state = json.loads(json.dumps(usage.to_dict()))
    restored = Usage.from_dict(state)
    now = local_ms(5, 23)
    assert compute_bill(TOU, restored, now) == compute_bill(TOU, usage, now)
    assert compute_bill(TIERED, restored, now) == compute_bill(TIERED, usage, now)
    bill = compute_bill(TOU, usage, now)
    assert bill_from_dict(json.loads(json.dumps(bill_to_dict(bill)))) == bill
    assert bill_to_dict(bill)["lines"][0]["quantity"] == "0.150"
    with pytest.raises(ValueError, match="bad usage state"):
        Usage.from_dict(state | {"last_ms": state["start_ms"] - 1})
    with pytest.raises(ValueError, match="bad usage state"):
        Usage.from_dict(state | {"wh": [[10**6, 5]]})
    with pytest.raises(ValueError, match="bad bill"):
        bill_from_dict({"lines": [{"code": "x"}], "total_fen": 0})


# --------------------------------------------------------------------------- properties

RATES = st.integers(0, 20_000).map(lambda c: Decimal(c).scaleb(-2))  # 0.00 .. 200.00 fen


@st.composite
def tariffs(draw: st.DrawFn) -> Tariff:
    start_fee = draw(st.sampled_from([0, 0, 30, 100]))
    common: dict[str, Any] = {
        "id": "t",
        "version": draw(st.integers(1, 9)),
        "name": "t",
        "start_fee_fen": start_fee,
        "free_minutes": draw(st.sampled_from([0, 0, 1, 10])),
        "daily_cap_fen": draw(st.none() | st.integers(max(1, start_fee), 3000)),
        "tz_offset_minutes": draw(st.sampled_from([480, 480, 0, -300, 345])),
    }
    if draw(st.booleans()):
        n = draw(st.integers(1, 4))
        maxes = sorted(draw(st.sets(st.integers(1, 1500), min_size=n, max_size=n)))
        rates = sorted(draw(st.lists(RATES, min_size=n, max_size=n)))
        tiers = tuple(PowerTier(w, r) for w, r in zip(maxes, rates, strict=True))
        return Tariff(kind="power_tier", tiers=tiers, **common)
    cuts = sorted(draw(st.sets(st.integers(0, 1439), min_size=2, max_size=6)))
    palette = draw(st.lists(RATES, min_size=1, max_size=4))
    bands = []
    for i, begin in enumerate(cuts):
        end = cuts[(i + 1) % len(cuts)] or MINUTES_IN_DAY
        bands.append(TouBand(begin, end, draw(st.sampled_from(palette))))
    if draw(st.booleans()):
        bands = [TouBand(0, MINUTES_IN_DAY, palette[0])]
    return Tariff(kind="energy", bands=tuple(bands), service_fen_per_kwh=draw(RATES), **common)


MINUTES_IN_DAY = 1440
STEPS = st.integers(0, 400_000) | st.integers(0, 6).map(lambda k: k * MIN)
WATTS = st.floats(0, 1500) | st.sampled_from([0.0, 200.0, 400.0, 1100.0])
EVENTS = st.lists(
    st.tuples(st.just("add"), STEPS, WATTS, st.integers(0, 150))
    | st.tuples(st.just("extend"), st.integers(0, 2 * HOUR), st.just(0.0), st.just(0))
    | st.tuples(st.just("bill"), STEPS, st.just(0.0), st.just(0)),
    max_size=40,
)
STARTS = st.integers(1_600_000_000_000, 1_900_000_000_000) | st.integers(
    26_000_000, 31_000_000
).map(lambda m: m * MIN)


@dataclass
class Sample:
    t: int
    w: float
    wh: int


def _round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


ENERGY_CODES = {
    1: ["energy"],
    2: ["energy_peak", "energy_valley"],
    3: ["energy_peak", "energy_flat", "energy_valley"],
    4: ["energy_sharp", "energy_peak", "energy_flat", "energy_valley"],
}


def reference(
    tariff: Tariff, start: int, samples: list[Sample], now: int
) -> tuple[Fraction, dict[str, Fraction]]:
    """A from-scratch bill straight from the rules: (capped exact total, exact per line)."""
    tz_ms = tariff.tz_offset_minutes * MIN
    per_day: dict[int, Fraction] = {(start + tz_ms) // (1440 * MIN): Fraction(tariff.start_fee_fen)}
    lines: dict[str, Fraction] = {"start_fee": Fraction(tariff.start_fee_fen)}

    def charge(day: int, code: str, amount: Fraction) -> None:
        per_day[day] = per_day.get(day, Fraction(0)) + amount
        lines[code] = lines.get(code, Fraction(0)) + amount

    if tariff.kind == "power_tier":
        i, held = 0, 0.0
        for j in range(-((start - now) // MIN)):
            begin, end = start + j * MIN, start + (j + 1) * MIN
            while i < len(samples) and samples[i].t < begin:
                held, i = samples[i].w, i + 1
            peak = samples[i].w if i < len(samples) and samples[i].t == begin else held
            k = i
            while k < len(samples) and samples[k].t < end:
                peak, k = max(peak, samples[k].w), k + 1
            if j < tariff.free_minutes:
                continue
            tier = next(
                (n for n, t in enumerate(tariff.tiers) if peak <= t.max_w), len(tariff.tiers) - 1
            )
            rate = Fraction(tariff.tiers[tier].fen_per_hour) / 60
            charge((begin + tz_ms) // (1440 * MIN), f"time_tier_{tier + 1}", rate)
    else:
        rates = sorted({b.fen_per_kwh for b in tariff.bands}, reverse=True)
        for s in samples:
            if s.t < start + tariff.free_minutes * MIN:
                continue
            local = s.t + tz_ms
            band = next(b for b in tariff.bands if b.covers((local // MIN) % 1440))
            code = ENERGY_CODES[len(rates)][rates.index(band.fen_per_kwh)]
            day = local // (1440 * MIN)
            charge(day, code, s.wh * Fraction(band.fen_per_kwh) / 1000)
            charge(day, "service_fee", s.wh * Fraction(tariff.service_fen_per_kwh) / 1000)
    cap = tariff.daily_cap_fen
    capped = sum(
        (v if cap is None else min(v, Fraction(cap)) for v in per_day.values()), Fraction(0)
    )
    return capped, lines


def check_bill(bill: Bill) -> None:
    assert type(bill.total_fen) is int
    assert all(type(line.amount_fen) is int for line in bill.lines)
    assert bill.total_fen == sum(line.amount_fen for line in bill.lines)
    assert bill.total_fen >= 0
    for line in bill.lines:
        if line.code in ("daily_cap_discount", "prepaid_cap"):
            assert line.amount_fen <= 0
        else:
            assert line.amount_fen >= 0


@settings(max_examples=300, deadline=None)
@given(tariff=tariffs(), start=STARTS, events=EVENTS, prepaid=st.none() | st.integers(0, 2000))
def test_bill_never_decreases_and_matches_the_rules(
    tariff: Tariff, start: int, events: list[tuple[str, int, float, int]], prepaid: int | None
) -> None:
    usage = Usage(start)
    samples: list[Sample] = []
    now, last_total, last_capped = start, 0, 0
    for op, step, w, wh in events:
        now += step
        if op == "add":
            usage.add(now, w, wh)
            samples.append(Sample(now, w, wh))
        elif op == "extend":
            usage.extend_to(now)
        bill = compute_bill(tariff, usage, now, prepaid_fen=prepaid)
        check_bill(bill)
        assert bill.total_fen >= last_total
        capped_total = usage.cost_so_far_fen(tariff, now)
        assert capped_total >= last_capped
        assert bill.total_fen == (capped_total if prepaid is None else min(capped_total, prepaid))
        last_total, last_capped = bill.total_fen, capped_total

    bill = compute_bill(tariff, usage, now)
    exact_total, exact_lines = reference(tariff, start, samples, now)
    assert bill.total_fen == _round_half_up(exact_total)
    assert abs(bill.total_fen - exact_total) <= Fraction(1, 2)
    for line in bill.lines:
        if line.code in exact_lines:
            assert abs(line.amount_fen - exact_lines[line.code]) < 1
    billed = {line.code for line in bill.lines}
    assert {code for code, v in exact_lines.items() if v} <= billed

    replay = Usage(start)
    t = start
    for op, step, w, wh in events:
        t += step
        if op == "add":
            replay.add(t, w, wh)
        elif op == "extend":
            replay.extend_to(t)
    assert compute_bill(tariff, replay, now) == bill

    restored = Usage.from_dict(json.loads(json.dumps(usage.to_dict())))
    assert compute_bill(tariff, restored, now) == bill
    assert (restored.total_wh, restored.last_ms) == (usage.total_wh, usage.last_ms)
    for u in (usage, restored):
        u.add(now + 90_000, 250.0, 7)
    assert compute_bill(tariff, restored, now + 200_000) == compute_bill(
        tariff, usage, now + 200_000
    )
    assert bill_from_dict(json.loads(json.dumps(bill_to_dict(bill)))) == bill


@given(tariff=tariffs())
def test_dict_round_trip_property(tariff: Tariff) -> None:
    assert tariff_from_dict(tariff_to_dict(tariff)) == tariff


@given(total=st.integers(0, 10_000), prepaid=st.integers(0, 10_000))
def test_prepaid_outcome_property(total: int, prepaid: int) -> None:
    charged, refund = prepaid_outcome(total, prepaid)
    assert charged + refund == prepaid
    assert 0 <= charged <= total
    assert refund >= 0


@given(tariff=tariffs(), prepaid=st.integers(0, 1000), at_w=WATTS)
def test_minutes_affordable_is_affordable(tariff: Tariff, prepaid: int, at_w: float) -> None:
    n = minutes_affordable(tariff, prepaid, at_w, limit_minutes=600)
    assert 0 <= n <= 600
    if tariff.kind == "power_tier" and n:
        # local midnight: the whole stretch (<= 600 min) falls on one local day
        start = 18_000 * 1440 * MIN - tariff.tz_offset_minutes * MIN
        usage = Usage(start)
        usage.add(start, at_w, 0)
        assert compute_bill(tariff, usage, start + n * MIN).total_fen <= prepaid
