"""A day in a shed: who arrives when, with what bike, paying how, leaving when.

Pure and deterministic for a given seed. Shapes from field practice: residents
plug in after work (18:00-22:00 peak) and fetch the bike in the morning
(07:00-09:00); delivery riders charge at midday and in the afternoon with
larger packs; some bikes stay long after full; a few chargers are faulty;
some bays are used for parking only.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

HOUR_MS = 3_600_000
TZ_OFFSET_MS = 8 * HOUR_MS  # China standard time

Rider = Literal["resident", "rider", "parker"]
Pay = Literal["card", "plan", "order_full", "order_amount"]
BikeKind = Literal["lead_acid", "lithium", "overdraw", "no_taper", "none"]


@dataclass(frozen=True, slots=True)
class Arrival:
    id: str
    t_ms: int
    who: Rider
    bike: BikeKind
    pay: Pay
    amount_fen: int  # prepaid amount (order) or nothing for cards/plans
    leave_ms: int  # unplugs and rides off
    stop_early_ms: int | None  # stops from the phone before leaving
    soc: float  # state of charge on arrival


# Arrivals per hour of the local day for a 24-socket shed.
RESIDENT_RATE = [0.2, 0.1, 0.0, 0.0, 0.0, 0.1, 0.2, 0.3, 0.3, 0.2, 0.3, 0.4,
                 0.5, 0.4, 0.4, 0.5, 1.0, 3.0, 7.0, 9.0, 8.0, 5.0, 2.0, 0.6]
RIDER_RATE = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.2, 0.3, 0.6, 1.2,
              1.5, 1.2, 1.0, 1.0, 0.8, 0.4, 0.2, 0.1, 0.0, 0.0, 0.0, 0.0]
PARKER_RATE = [0.0] * 7 + [0.3, 0.3] + [0.1] * 8 + [0.3, 0.3] + [0.1] * 5


def local_hour(t_ms: int) -> float:
    return ((t_ms + TZ_OFFSET_MS) % (24 * HOUR_MS)) / HOUR_MS


def plan_day(rng: random.Random, start_ms: int, hours: float, sockets: int) -> list[Arrival]:
    """Arrivals over `hours` from `start_ms`, scaled to the shed's size."""
    scale = sockets / 24
    out: list[Arrival] = []
    end_ms = start_ms + int(hours * HOUR_MS)
    t = start_ms
    n = 0
    step_ms = 60_000
    while t < end_ms:
        h = int(local_hour(t))
        for who, rates in (("resident", RESIDENT_RATE), ("rider", RIDER_RATE),
                           ("parker", PARKER_RATE)):
            if rng.random() < rates[h] * scale * step_ms / HOUR_MS:
                n += 1
                out.append(_arrival(rng, f"a{n:04d}", t + rng.randrange(step_ms), who))  # type: ignore[arg-type]
        t += step_ms
    return sorted(out, key=lambda a: a.t_ms)


def _next_local(t_ms: int, hour: float) -> int:
    """The next time at or after `t_ms` when the local clock shows `hour`."""
    day = (t_ms + TZ_OFFSET_MS) // (24 * HOUR_MS) * (24 * HOUR_MS) - TZ_OFFSET_MS
    candidate = day + int(hour * HOUR_MS)
    return candidate if candidate >= t_ms else candidate + 24 * HOUR_MS


def _arrival(rng: random.Random, aid: str, t: int, who: Rider) -> Arrival:
    if who == "parker":
        stay = int(rng.uniform(2.5, 5) * HOUR_MS)
        return Arrival(aid, t, who, "none", "order_full", 0, t + stay, None, 1.0)
    r = rng.random()
    bike: BikeKind
    if r < 0.03:
        bike = "overdraw"
    elif r < 0.06:
        bike = "no_taper"
    elif who == "rider" or r < 0.45:
        bike = "lithium"
    else:
        bike = "lead_acid"
    soc = rng.uniform(0.1, 0.5)
    if who == "resident" and local_hour(t) >= 16:
        leave = _next_local(t, rng.uniform(7.0, 9.0))  # fetched in the morning
    else:
        leave = t + int(rng.uniform(2.0, 5.0) * HOUR_MS)
    p = rng.random()
    pay: Pay
    amount = 0
    if p < 0.30:
        pay = "card"
    elif p < 0.40:
        pay = "plan"
    elif p < 0.80:
        pay, amount = "order_full", 500  # deposit, the rest comes back
    else:
        pay, amount = "order_amount", rng.choice((100, 100, 200, 300))
    stop_early = None
    if rng.random() < 0.08:
        stop_early = t + int(rng.uniform(0.5, 2.0) * HOUR_MS)
    return Arrival(aid, t, who, bike, pay, amount, leave, stop_early, soc)


def bay_count(sockets: int) -> int:
    return max(2, math.ceil(sockets / 3))
