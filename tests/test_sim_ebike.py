"""E-bike battery and charger models: curves, energy, faults, determinism."""

from __future__ import annotations

import itertools
import random
import statistics
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.ebike import (
    BikeSpec,
    EBike,
    lead_acid,
    lithium,
    no_taper_charger,
    overdraw_charger,
    random_bike,
)

HOUR = 3600.0


def charge(bike: EBike, hours: float, dt_s: float = 5.0) -> tuple[list[float], float]:
    """Charge with power on; return the power of every step and the energy."""
    powers: list[float] = []
    energy = 0.0
    for _ in range(round(hours * HOUR / dt_s)):
        powers.append(bike.power_w())
        energy += bike.step(dt_s, True)
    return powers, energy


def first_below(powers: list[float], limit_w: float, dt_s: float, window_s: float = 300.0) -> float:
    """Time at which the `window_s` average first falls below `limit_w` (a "full" detector)."""
    n = round(window_s / dt_s)
    for i in range(n, len(powers) + 1):
        if statistics.fmean(powers[i - n : i]) < limit_w:
            return (i - n) * dt_s
    return float("inf")


def averages(powers: list[float], dt_s: float, window_s: float) -> list[float]:
    n = round(window_s / dt_s)
    return [statistics.fmean(powers[i : i + n]) for i in range(0, len(powers) - n + 1, n)]


@pytest.mark.parametrize("seed", range(10))
def test_lead_acid_takes_about_1_kwh_over_6_to_8_hours_from_low_soc(seed: int) -> None:
    bike = lead_acid(random.Random(seed), soc=0.1)
    powers, energy = charge(bike, 8.0)
    assert 900.0 <= energy <= 1100.0
    assert 6 * HOUR <= first_below(powers, 30.0, 5.0) <= 8 * HOUR
    assert bike.stage == "float"


@pytest.mark.parametrize("seed", range(10))
def test_lead_acid_curve_is_flat_then_tapers_then_floats(seed: int) -> None:
    bike = lead_acid(random.Random(seed), soc=0.1)
    cv_soc = bike.spec.cv_soc
    powers: list[float] = []
    stages: list[str] = []
    for _ in range(round(9 * HOUR / 5.0)):
        powers.append(bike.power_w())
        stages.append(bike.stage)
        bike.step(5.0, True)
    cc = [w for w, s in zip(powers, stages, strict=True) if s == "cc"]
    cv = [w for w, s in zip(powers, stages, strict=True) if s == "cv"]
    fl = [w for w, s in zip(powers, stages, strict=True) if s == "float"]
    assert cc
    assert cv
    assert fl
    assert stages.index("cv") < stages.index("float")
    # constant current: flat within a few per cent, in the charger range
    assert all(150.0 <= w <= 350.0 for w in cc)
    assert max(cc) - min(cc) < 0.1 * statistics.fmean(cc)
    # constant voltage: every 10-minute average lower than the one before
    cv_avgs = averages(cv, 5.0, 600.0)
    assert len(cv_avgs) >= 6
    assert all(b < a for a, b in itertools.pairwise(cv_avgs))
    # float: low and steady, well under the controller's 30 W "full" threshold
    assert 4.0 <= statistics.fmean(fl) <= 16.0
    assert max(fl) < 30.0
    assert bike.soc >= cv_soc


@pytest.mark.parametrize("seed", range(10))
def test_lithium_takes_half_to_0_8_kwh_and_floats_at_a_few_watts(seed: int) -> None:
    bike = lithium(random.Random(seed), soc=0.1)
    powers, energy = charge(bike, 8.0)
    assert 500.0 <= energy <= 800.0
    assert first_below(powers, 30.0, 5.0) < 6 * HOUR
    tail = powers[-round(HOUR / 5.0) :]
    assert 1.5 <= statistics.fmean(tail) <= 5.5
    assert max(tail) < 30.0


def test_initial_state_of_charge_varies_and_a_fuller_pack_takes_less() -> None:
    rng = random.Random(7)
    socs = {round(lead_acid(rng).soc, 3) for _ in range(20)}
    assert len(socs) == 20
    assert all(0.05 <= s <= 0.6 for s in socs)
    low = charge(lead_acid(random.Random(1), soc=0.1), 9.0)[1]
    high = charge(lead_acid(random.Random(1), soc=0.6), 9.0)[1]
    assert high < low - 400.0


@pytest.mark.parametrize("seed", range(5))
def test_overdraw_charger_draws_1400_to_1800_w(seed: int) -> None:
    bike = overdraw_charger(random.Random(seed))
    powers, _ = charge(bike, 0.5, dt_s=1.0)
    assert bike.stage == "fault"
    assert all(1390.0 < w < 1810.0 for w in powers)


@pytest.mark.parametrize("seed", range(5))
def test_no_taper_charger_never_tapers(seed: int) -> None:
    bike = no_taper_charger(random.Random(seed), soc=0.2)
    powers, energy = charge(bike, 24.0, dt_s=30.0)
    cc_w = bike.spec.cc_w
    assert 150.0 <= cc_w <= 350.0
    assert all(abs(w - cc_w) < 5.0 for w in powers)
    assert energy == pytest.approx(cc_w * 24.0, rel=0.01)
    assert bike.soc == 1.0


def test_no_energy_without_power_and_delivered_is_the_exact_sum() -> None:
    bike = lead_acid(random.Random(3), soc=0.3)
    soc = bike.soc
    assert bike.step(600.0, False) == 0.0
    assert bike.soc == soc
    assert bike.delivered_wh == 0.0
    total = 0.0
    for dt in (0.1, 1.0, 0.5, 2.0, 1.0) * 100:
        total += bike.step(dt, True)
    assert bike.delivered_wh == total
    assert bike.step(0.0, True) == 0.0


def test_power_is_sampled_once_per_step() -> None:
    bike = lithium(random.Random(4), soc=0.2)
    w = bike.power_w()
    assert bike.power_w() == w  # the board can look before it integrates
    assert bike.step(3600.0, True) == pytest.approx(w)


def test_measurement_ripple_is_a_few_watts() -> None:
    bike = lead_acid(random.Random(5), soc=0.1)
    powers, _ = charge(bike, 0.5, dt_s=1.0)
    spread = statistics.pstdev(powers)
    assert 0.5 < spread < 3.0
    assert len(set(powers)) > 100


def test_same_seed_same_bike_same_curve() -> None:
    a, b = lead_acid(random.Random(42)), lead_acid(random.Random(42))
    assert a.spec == b.spec
    assert charge(a, 1.0) == charge(b, 1.0)
    c = lead_acid(random.Random(43))
    assert charge(c, 1.0) != charge(lead_acid(random.Random(42)), 1.0)


def test_random_bike_mixes_chemistries() -> None:
    rng = random.Random(9)
    kinds = [random_bike(rng, lithium_share=0.5).spec.chemistry for _ in range(200)]
    assert 60 < kinds.count("lithium") < 140


def test_spec_is_validated() -> None:
    good = lead_acid(random.Random(1)).spec
    with pytest.raises(ValueError, match="cv_soc"):
        replace(good, cv_soc=1.0)
    with pytest.raises(ValueError, match="float_w"):
        replace(good, turn_w=400.0)
    with pytest.raises(ValueError, match="fault_w"):
        replace(good, fault="overdraw")
    with pytest.raises(ValueError, match="power_factor"):
        BikeSpec("lithium", 700.0, 250.0, 0.9, 20.0, 3.0, power_factor=0.0)
    with pytest.raises(ValueError, match="soc"):
        EBike(good, 1.5, random.Random(1))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    kind=st.sampled_from(["lead", "lithium", "no_taper", "overdraw"]),
    steps=st.lists(st.tuples(st.floats(0.0, 600.0, allow_nan=False), st.booleans()), max_size=200),
)
def test_energy_accounting_holds_for_any_step_pattern(
    seed: int, kind: str, steps: list[tuple[float, bool]]
) -> None:
    rng = random.Random(seed)
    makers = {
        "lead": lead_acid,
        "lithium": lithium,
        "no_taper": no_taper_charger,
        "overdraw": lambda r: overdraw_charger(r),
    }
    bike = makers[kind](rng)
    total = 0.0
    for dt, on in steps:
        w = bike.power_w()
        assert w >= 0.0
        e = bike.step(dt, on)
        assert e == (w * dt / 3600.0 if on and dt > 0 else 0.0)
        total += e
        assert 0.0 <= bike.soc <= 1.0
    assert bike.delivered_wh == total
