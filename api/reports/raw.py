"""The same report computed by scanning raw sessions, alarms and demand events.

The benchmark's baseline (bench/reports.py): what a report would cost without
the rollups. It reads every closed session that can touch the period and
splits each one with the same rules (`contribution.py`), so the two reports
must be equal, table for table.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import Alarm, ChargeSession, DemandEvent, Shed
from api.reports.contribution import MAX_IN_USE_MS, SessionFigures, contribution
from api.reports.model import Report, Totals, build_report
from api.reports.periods import Period, day_start_ms, hour_start_ms
from api.reports.queries import compound_sheds
from api.reports.reasons import SAFETY_ALARMS
from api.reports.rollups import SHED_PORT


def raw_report(db: Session, compound_id: str, period: Period) -> Report:
    compound, sheds = compound_sheds(db, compound_id)
    sockets: defaultdict[tuple[str, int], dict[str, int]] = defaultdict(dict)
    days: defaultdict[int, dict[str, int]] = defaultdict(dict)
    hours: defaultdict[int, dict[str, int]] = defaultdict(dict)
    start, end = period.start_ms, period.end_ms

    def add_day(shed_id: str, port: int, day: int, counts: dict[str, int]) -> None:
        if start <= day < end:
            for name, value in counts.items():
                _bump(sockets[(shed_id, port)], name, value)
                _bump(days[day], name, value)

    def add_hour(hour: int, counts: dict[str, int]) -> None:
        if start <= hour < end:
            for name, value in counts.items():
                _bump(hours[hour], name, value)

    c = ChargeSession
    rows = db.execute(
        select(
            c.shed_id,
            c.port,
            c.started_ms,
            c.ended_ms,
            c.end_reason,
            c.energy_wh,
            c.billed_fen,
            c.refund_fen,
        )
        .join(Shed, Shed.id == c.shed_id)
        .where(
            Shed.compound_id == compound_id,
            c.ended_ms.is_not(None),
            c.started_ms >= start - MAX_IN_USE_MS,
            c.started_ms < end,
        )
    ).all()
    for shed_id, port_, started, ended, reason, energy, billed, refund in rows:
        part = contribution(SessionFigures(port_, started, ended, reason, energy, billed, refund))
        for (port, day), counts in part.days.items():
            add_day(shed_id, port, day, counts)
        for hour, counts in part.hours.items():
            add_hour(hour, counts)
    alarms = db.execute(
        select(Alarm.shed_id, Alarm.port, Alarm.raised_ms)
        .join(Shed, Shed.id == Alarm.shed_id)
        .where(
            Shed.compound_id == compound_id,
            Alarm.kind.in_(SAFETY_ALARMS),
            Alarm.raised_ms >= start,
            Alarm.raised_ms < end,
        )
    ).all()
    for shed_id, alarm_port, raised_ms in alarms:
        add_day(shed_id, alarm_port or SHED_PORT, day_start_ms(raised_ms), {"incidents": 1})
    events = db.execute(
        select(DemandEvent.shed_id, DemandEvent.at_ms)
        .join(Shed, Shed.id == DemandEvent.shed_id)
        .where(
            Shed.compound_id == compound_id,
            DemandEvent.at_ms >= start,
            DemandEvent.at_ms < end,
        )
    ).all()
    for shed_id, at_ms in events:
        add_day(shed_id, SHED_PORT, day_start_ms(at_ms), {"unserved": 1})
        add_hour(hour_start_ms(at_ms), {"unserved": 1})
    totals = Totals(sockets=dict(sockets), days=dict(days), hours=dict(hours))
    return build_report(compound.id, compound.name, period, sheds, totals)


def _bump(counts: dict[str, int], name: str, value: int) -> None:
    counts[name] = counts.get(name, 0) + value
