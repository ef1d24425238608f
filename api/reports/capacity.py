"""Capacity planning: how many turned-away residents N more sockets would have served.

For each shed of a compound and N = 1..20 more sockets, the recorded arrivals
of the period are replayed through a small model of the shed (docs/reports.md):

- the recorded sessions keep the sockets they had: they happened, at their
  times, on the shed's own sockets;
- each turned-away resident (a recorded unserved-demand event, api/reports/
  demand.py: no socket was free) arrives at the recorded time and takes one
  of the N new sockets if one is free, first come first served, else is
  turned away again;
- a served newcomer charges as long as the session that started last before
  them in the same shed (someone who came at that hour charged that long);
  before any session, the median of the period's sessions; with none at all,
  `DEFAULT_CHARGE_MS`.

`replay()` is pure and fast (a heap of end times per N: a year of one shed's
arrivals replays in well under a second, bench printed by the tests);
`capacity_table()` loads the arrivals from the central database.
"""

from __future__ import annotations

import bisect
import heapq
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import ChargeSession, DemandEvent, Shed
from api.reports.model import Table
from api.reports.periods import Period
from api.reports.queries import compound_sheds

TABLE: Final = "capacity"
MAX_EXTRA: Final = 20
DEFAULT_CHARGE_MS: Final = 4 * 3_600_000
COLUMNS: Final = ["shed", "socket_count", "extra_sockets", "turned_away", "served", "served_pct"]


@dataclass(frozen=True, slots=True)
class ShedArrivals:
    shed_id: str
    sockets: int
    sessions: Sequence[tuple[int, int]]  # (start_ms, end_ms), any order
    turned_away: Sequence[int]  # when each turned-away resident came, ms


@dataclass(frozen=True, slots=True)
class CapacityRow:
    shed_id: str
    sockets: int
    extra: int
    turned_away: int
    served: int

    @property
    def served_pct(self) -> float:
        return round(100.0 * self.served / self.turned_away, 1) if self.turned_away else 0.0


def charge_times(arrivals: ShedArrivals) -> list[tuple[int, int]]:
    """(arrival, how long they would have charged) of each turned-away resident, in order."""
    sessions = sorted((s, max(0, e - s)) for s, e in arrivals.sessions)
    starts = [s for s, _ in sessions]
    fallback = int(statistics.median(d for _, d in sessions)) if sessions else DEFAULT_CHARGE_MS
    out = []
    for at in sorted(arrivals.turned_away):
        i = bisect.bisect_right(starts, at) - 1
        out.append((at, sessions[i][1] if i >= 0 else fallback))
    return out


def replay(arrivals: ShedArrivals, max_extra: int = MAX_EXTRA) -> list[CapacityRow]:
    """One row per N = 1..max_extra: how many turned-away residents N more sockets serve."""
    if max_extra < 1:
        raise ValueError("max_extra must be at least 1")
    demand = charge_times(arrivals)
    rows = []
    for extra in range(1, max_extra + 1):
        busy: list[int] = []  # end times of the newcomers on the new sockets
        served = 0
        for at, length in demand:
            while busy and busy[0] <= at:
                heapq.heappop(busy)
            if len(busy) < extra:
                heapq.heappush(busy, at + length)
                served += 1
        rows.append(CapacityRow(arrivals.shed_id, arrivals.sockets, extra, len(demand), served))
        if served == len(demand):  # more sockets cannot serve more
            rows += [
                CapacityRow(arrivals.shed_id, arrivals.sockets, n, len(demand), served)
                for n in range(extra + 1, max_extra + 1)
            ]
            break
    return rows


def load_arrivals(db: Session, compound_id: str, period: Period) -> list[ShedArrivals]:
    """The period's recorded sessions and unserved demand of each shed of the compound."""
    _, sheds = compound_sheds(db, compound_id)
    sessions: dict[str, list[tuple[int, int]]] = {s.id: [] for s in sheds}
    demand: dict[str, list[int]] = {s.id: [] for s in sheds}
    c = ChargeSession
    rows = db.execute(
        select(c.shed_id, c.started_ms, c.ended_ms, c.stop_ms)
        .join(Shed, Shed.id == c.shed_id)
        .where(
            Shed.compound_id == compound_id,
            c.started_ms >= period.start_ms,
            c.started_ms < period.end_ms,
        )
    ).all()
    for shed_id, started, ended, stopped in rows:
        end = ended if ended is not None else stopped if stopped is not None else period.end_ms
        sessions[shed_id].append((started, end))
    events = db.execute(
        select(DemandEvent.shed_id, DemandEvent.at_ms)
        .join(Shed, Shed.id == DemandEvent.shed_id)
        .where(
            Shed.compound_id == compound_id,
            DemandEvent.at_ms >= period.start_ms,
            DemandEvent.at_ms < period.end_ms,
        )
    ).all()
    for shed_id, at in events:
        demand[shed_id].append(at)
    return [ShedArrivals(s.id, len(s.ports), sessions[s.id], demand[s.id]) for s in sheds]


def capacity_table(db: Session, compound_id: str, period: Period) -> Table:
    """The `capacity` table: a row per shed and N = 1..20."""
    table = Table(TABLE, list(COLUMNS))
    for arrivals in load_arrivals(db, compound_id, period):
        for r in replay(arrivals):
            table.rows.append(
                [r.shed_id, r.sockets, r.extra, r.turned_away, r.served, r.served_pct]
            )
    return table
