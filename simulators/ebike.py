"""E-bike battery and charger models: pure, deterministic given a `random.Random`.

A bike is a battery plus the charger the resident brought. The model is what a
socket's meter sees on the AC side: the charger's draw in watts and the energy
that flows. Three stages, as on real chargers:

- constant current (CC): roughly flat power (`cc_w`, 150-350 W), rising a few
  per cent as the pack voltage climbs;
- constant voltage (CV): from `cv_soc` on, power falls with the charge still
  missing, an exponential taper in time;
- float: once the taper falls below the charger's turn point (`turn_w`, the
  "green light" of Chinese chargers), a low maintenance draw (`float_w`: 5-15 W
  lead-acid, 2-5 W lithium), below the controller's 30 W "full" threshold.

State of charge is counted in AC-side watt-hours (`capacity_wh`: the energy the
charger draws to take the pack from empty to full, losses included), so the
energy a test expects from a state of charge is easy to reason about.

Power is piecewise constant: `power_w()` is the draw for the next step (the
level for the present state plus a ripple sample), `step()` integrates exactly
that power over `dt_s` and returns the energy. `delivered_wh` is the exact sum
of what `step()` returned: the ground truth a meter register must match.

Faulty chargers: `overdraw` draws 1400-1800 W from the first second (a board
must trip it on `max_w`); `no_taper` stays at its CC power for ever (only the
controller's session caps stop it); `unstable` switches between its CC power
and a fifth of it every `fault_period_s`; `leaky` (a pack with a shorted cell)
tapers towards `fault_w` instead of its float and never finishes; `no_battery`
(a charger plugged in with no pack on it) draws only its standby `float_w`.
A worn plug heats the socket: `contact_k` (degrees C per W, added to the
socket's own heating) is for the board or test that models the temperature.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Literal

Chemistry = Literal["lead_acid", "lithium"]
BikeFault = Literal["overdraw", "no_taper", "unstable", "leaky", "no_battery"]
Stage = Literal["cc", "cv", "float", "fault"]

_CC_RISE = 0.06  # CC power rises by this fraction from empty to the CV point


@dataclass(frozen=True, slots=True)
class BikeSpec:
    """A pack and its charger. All powers are AC-side watts at the socket."""

    chemistry: Chemistry
    capacity_wh: float  # AC energy from empty to full (charger losses included)
    cc_w: float  # power in constant current (at the CV point)
    cv_soc: float  # state of charge where the charger changes to constant voltage
    turn_w: float  # taper power below which the charger goes to float
    float_w: float  # float / standby draw
    noise_w: float = 1.5  # standard deviation of the power ripple
    power_factor: float = 0.9  # a = w / (v * power_factor)
    fault: BikeFault | None = None
    fault_w: float = 0.0  # draw of an `overdraw` charger; the taper floor of a `leaky` pack
    fault_period_s: float = 40.0  # half-period of an `unstable` charger
    contact_k: float = 0.0  # extra socket heating of a worn plug, degrees C per W

    def __post_init__(self) -> None:
        if self.capacity_wh <= 0 or self.cc_w <= 0:
            raise ValueError("capacity_wh and cc_w must be positive")
        if not 0.0 < self.cv_soc < 1.0:
            raise ValueError("cv_soc must be in (0, 1)")
        if not 0.0 <= self.float_w < self.turn_w <= self.cc_w:
            raise ValueError("need 0 <= float_w < turn_w <= cc_w")
        if not 0.0 < self.power_factor <= 1.0:
            raise ValueError("power_factor must be in (0, 1]")
        if self.fault in ("overdraw", "leaky") and self.fault_w <= 0:
            raise ValueError(f"a {self.fault} charger needs fault_w > 0")
        if self.fault_period_s <= 0 or self.contact_k < 0:
            raise ValueError("fault_period_s must be positive and contact_k not negative")


class EBike:
    """One bike: state of charge, charger stage, and the energy it has taken."""

    __slots__ = ("_next_w", "_rng", "_t_s", "bike_id", "delivered_wh", "soc", "spec")

    def __init__(self, spec: BikeSpec, soc: float, rng: random.Random, bike_id: str = "") -> None:
        if not 0.0 <= soc <= 1.0:
            raise ValueError("soc must be in [0, 1]")
        self.spec = spec
        self.soc = soc
        self.bike_id = bike_id
        self.delivered_wh = 0.0  # ground truth: exact sum of every step's energy
        # Own stream, so a bike's ripple does not depend on what else is simulated.
        self._rng = random.Random(rng.getrandbits(64))
        self._next_w: float | None = None
        self._t_s = 0.0  # time charged so far (drives an `unstable` charger)

    def __repr__(self) -> str:
        return (
            f"EBike({self.bike_id!r}, {self.spec.chemistry}, fault={self.spec.fault}, "
            f"soc={self.soc:.3f}, delivered_wh={self.delivered_wh:.1f})"
        )

    @property
    def stage(self) -> Stage:
        spec = self.spec
        if spec.fault is not None and spec.fault != "leaky":
            return "fault"
        if self.soc < spec.cv_soc:
            return "cc"
        return "float" if self._taper_w() < spec.turn_w else "cv"

    @property
    def power_factor(self) -> float:
        return self.spec.power_factor

    def level_w(self) -> float:
        """The charger's draw for the present state, without ripple."""
        spec = self.spec
        if spec.fault == "overdraw":
            return spec.fault_w
        if spec.fault == "no_taper":
            return spec.cc_w
        if spec.fault == "no_battery":
            return spec.float_w
        if spec.fault == "unstable":
            high = int(self._t_s // spec.fault_period_s) % 2 == 0
            return spec.cc_w if high else spec.cc_w / 5
        if self.soc < spec.cv_soc:
            return spec.cc_w * (1.0 - _CC_RISE + _CC_RISE * self.soc / spec.cv_soc)
        taper = self._taper_w()
        return spec.float_w if taper < spec.turn_w else taper

    def power_w(self) -> float:
        """The draw during the next `step()` with power applied (ripple included).

        Sampled once and kept until `step()` uses it, so a board can look at
        the power (for `max_w`, for telemetry) before it integrates it.
        """
        if self._next_w is None:
            level = self.level_w()
            sigma = min(self.spec.noise_w, 0.1 * level)
            ripple = max(-3.0 * sigma, min(3.0 * sigma, self._rng.gauss(0.0, sigma)))
            self._next_w = max(0.0, level + ripple)
        return self._next_w

    def step(self, dt_s: float, relay_on: bool) -> float:
        """Charge for `dt_s` seconds; return the energy drawn in Wh (0 when off)."""
        if dt_s <= 0.0:
            return 0.0
        if not relay_on:
            return 0.0
        w = self.power_w()
        self._next_w = None
        self._t_s += dt_s
        energy_wh = w * dt_s / 3600.0
        stored_wh = max(0.0, w - self._floor_w()) * dt_s / 3600.0
        if self.stage != "float":
            self.soc = min(1.0, self.soc + stored_wh / self.spec.capacity_wh)
        self.delivered_wh += energy_wh
        return energy_wh

    def _floor_w(self) -> float:
        """What the taper falls towards: the float, or a leaky pack's own drain."""
        spec = self.spec
        return spec.fault_w if spec.fault == "leaky" else spec.float_w

    def _taper_w(self) -> float:
        spec = self.spec
        floor = self._floor_w()
        missing = (1.0 - self.soc) / (1.0 - spec.cv_soc)
        return floor + (spec.cc_w - floor) * missing


def lead_acid_spec(rng: random.Random) -> BikeSpec:
    """A 48 V 20 Ah lead-acid pack (about 1.1 kWh AC from empty, 6-8 h)."""
    return BikeSpec(
        chemistry="lead_acid",
        capacity_wh=rng.uniform(1050.0, 1100.0),
        cc_w=rng.uniform(190.0, 210.0),
        cv_soc=rng.uniform(0.74, 0.77),
        turn_w=rng.uniform(26.0, 35.0),
        float_w=rng.uniform(5.0, 15.0),
        noise_w=1.5,
        power_factor=rng.uniform(0.55, 0.95),
    )


def lithium_spec(rng: random.Random) -> BikeSpec:
    """A 48 V lithium pack (0.6-0.76 kWh AC from empty) on a 3-5 A charger."""
    return BikeSpec(
        chemistry="lithium",
        capacity_wh=rng.uniform(600.0, 760.0),
        cc_w=rng.uniform(180.0, 320.0),
        cv_soc=rng.uniform(0.85, 0.9),
        turn_w=rng.uniform(15.0, 25.0),
        float_w=rng.uniform(2.0, 5.0),
        noise_w=1.5,
        power_factor=rng.uniform(0.55, 0.95),
    )


def _initial_soc(rng: random.Random, soc: float | None) -> float:
    return rng.uniform(0.05, 0.6) if soc is None else soc


def lead_acid(rng: random.Random, *, soc: float | None = None, bike_id: str = "") -> EBike:
    """A lead-acid bike; `soc` defaults to a random 5-60 %."""
    spec = lead_acid_spec(rng)
    return EBike(spec, _initial_soc(rng, soc), rng, bike_id)


def lithium(rng: random.Random, *, soc: float | None = None, bike_id: str = "") -> EBike:
    """A lithium bike; `soc` defaults to a random 5-60 %."""
    spec = lithium_spec(rng)
    return EBike(spec, _initial_soc(rng, soc), rng, bike_id)


def overdraw_charger(rng: random.Random, *, bike_id: str = "") -> EBike:
    """A faulty charger drawing 1400-1800 W: a board must trip it on `max_w`."""
    spec = replace(lead_acid_spec(rng), fault="overdraw", fault_w=rng.uniform(1400.0, 1800.0))
    return EBike(spec, _initial_soc(rng, None), rng, bike_id)


def no_taper_charger(rng: random.Random, *, soc: float | None = None, bike_id: str = "") -> EBike:
    """A faulty charger that stays at its CC power (150-350 W) for ever."""
    spec = replace(lead_acid_spec(rng), fault="no_taper", cc_w=rng.uniform(150.0, 350.0))
    return EBike(spec, _initial_soc(rng, soc), rng, bike_id)


def unstable_charger(rng: random.Random, *, bike_id: str = "") -> EBike:
    """A failing charger that drops to a fifth of its power and back every 20-60 s."""
    spec = replace(lead_acid_spec(rng), fault="unstable", fault_period_s=rng.uniform(20.0, 60.0))
    return EBike(spec, _initial_soc(rng, None), rng, bike_id)


def leaky_pack(rng: random.Random, *, bike_id: str = "") -> EBike:
    """A lead-acid pack with a shorted cell: it tapers towards 55-65 % of the CC power
    and never reaches float, taking far more energy than its charger suggests."""
    spec = lead_acid_spec(rng)
    spec = replace(spec, fault="leaky", fault_w=spec.cc_w * rng.uniform(0.55, 0.65))
    return EBike(spec, _initial_soc(rng, None), rng, bike_id)


def no_battery(rng: random.Random, *, bike_id: str = "") -> EBike:
    """A charger plugged in with no pack on it: standby draw (5-15 W) only."""
    return EBike(replace(lead_acid_spec(rng), fault="no_battery"), 0.0, rng, bike_id)


def worn_plug(rng: random.Random, *, bike_id: str = "") -> EBike:
    """A healthy lead-acid bike whose plug heats the socket (0.15-0.25 degrees C per W)."""
    spec = replace(lead_acid_spec(rng), contact_k=rng.uniform(0.15, 0.25))
    return EBike(spec, _initial_soc(rng, None), rng, bike_id)


def random_bike(
    rng: random.Random, *, lithium_share: float = 0.4, soc: float | None = None, bike_id: str = ""
) -> EBike:
    """A healthy bike: lithium with probability `lithium_share`, else lead-acid."""
    if rng.random() < lithium_share:
        return lithium(rng, soc=soc, bike_id=bike_id)
    return lead_acid(rng, soc=soc, bike_id=bike_id)
