"""The district view: one row per compound an admin runs, from the same
sources as the boards and the reports (docs/staff-board.md, "District view").

- sheds online, sockets by state, alarms open: the staff board's own
  `board.board` (live snapshots, last seen, active alarms);
- energy, revenue and unserved demand today (China day): the report rollups
  (`report_socket_days`), as the daily report reads them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.access import Principal, require_role
from api.models import Compound, ReportSocketDay
from api.reports.periods import day_start_ms
from api.schemas.board import ShedBoard
from api.services import board

ROLES = ("admin",)


@dataclass(slots=True)
class CompoundRow:
    id: str
    name: str
    sheds: list[ShedBoard] = field(default_factory=list)
    states: Counter[str] = field(default_factory=Counter)
    alarms: int = 0
    energy_wh: int = 0
    revenue_fen: int = 0
    sessions: int = 0
    unserved: int = 0

    @property
    def online(self) -> int:
        return sum(1 for s in self.sheds if s.online)


@dataclass(frozen=True, slots=True)
class District:
    now_ms: int
    day_ms: int
    compounds: list[CompoundRow]

    def total(self) -> CompoundRow:
        out = CompoundRow("", "")
        for row in self.compounds:
            out.sheds += row.sheds
            out.states += row.states
            out.alarms += row.alarms
            out.energy_wh += row.energy_wh
            out.revenue_fen += row.revenue_fen
            out.sessions += row.sessions
            out.unserved += row.unserved
        return out


def district(db: Session, principal: Principal, times: board.BoardTimes) -> District:
    """Every compound the principal is admin of (all, for a global admin)."""
    require_role(principal, *ROLES)
    allowed = principal.compounds(*ROLES)
    query = select(Compound).order_by(Compound.id)
    if allowed is not None:
        query = query.where(Compound.id.in_(sorted(allowed)))
    rows = {c.id: CompoundRow(c.id, c.name) for c in db.scalars(query)}
    for shed in board.board(db, principal, times).sheds:
        row = rows.get(shed.compound_id)
        if row is None:  # staff, not admin, there
            continue
        row.sheds.append(shed)
        row.states.update(shed.states)
        row.alarms += shed.active_alarms
    day = day_start_ms(times.now_ms)
    d = ReportSocketDay
    totals = db.execute(
        select(d.compound_id, func.sum(d.energy_wh), func.sum(d.billed_fen), func.sum(d.sessions),
               func.sum(d.unserved))
        .where(d.day_ms == day, d.compound_id.in_(sorted(rows)))
        .group_by(d.compound_id)
    ).all()  # fmt: skip
    for compound_id, energy, revenue, sessions, unserved in totals:
        row = rows[compound_id]
        row.energy_wh, row.revenue_fen = int(energy or 0), int(revenue or 0)
        row.sessions, row.unserved = int(sessions or 0), int(unserved or 0)
    return District(times.now_ms, day, list(rows.values()))
