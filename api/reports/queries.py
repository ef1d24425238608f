"""A report from the rollups: three GROUP BY queries over the period's rows.

A monthly report of a compound reads at most (sockets + sheds) x 31 day rows
and sheds x 744 hour rows, whatever the number of sessions (docs/reports.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.models import ROLLUP_COUNTS, Compound, ReportShedHour, ReportSocketDay, Shed, Socket
from api.reports.model import Counts, Report, ShedInfo, Totals, build_report
from api.reports.periods import Period


class UnknownCompound(LookupError):
    code = "unknown_compound"


def compound_sheds(db: Session, compound_id: str) -> tuple[Compound, list[ShedInfo]]:
    compound = db.get(Compound, compound_id)
    if compound is None:
        raise UnknownCompound(f"no compound {compound_id!r}")
    sheds = db.scalars(select(Shed).where(Shed.compound_id == compound_id).order_by(Shed.id)).all()
    ports: dict[str, list[int]] = {s.id: [] for s in sheds}
    rows = db.execute(
        select(Socket.shed_id, Socket.port)
        .join(Shed, Shed.id == Socket.shed_id)
        .where(Shed.compound_id == compound_id)
        .order_by(Socket.shed_id, Socket.port)
    ).all()
    for shed_id, port in rows:
        ports[shed_id].append(port)
    return compound, [ShedInfo(s.id, s.name, tuple(ports[s.id])) for s in sheds]


def report(db: Session, compound_id: str, period: Period) -> Report:
    compound, sheds = compound_sheds(db, compound_id)
    totals = Totals(
        sockets=_socket_totals(db, compound_id, period),
        days=_day_totals(db, compound_id, period),
        hours=_hour_totals(db, compound_id, period),
    )
    return build_report(compound.id, compound.name, period, sheds, totals)


def _counts(names: Sequence[str], values: Sequence[object]) -> Counts:
    return {name: int(value or 0) for name, value in zip(names, values, strict=True)}  # type: ignore[call-overload]


def _socket_totals(db: Session, compound_id: str, period: Period) -> dict[tuple[str, int], Counts]:
    d = ReportSocketDay
    sums = [func.sum(getattr(d, name)) for name in ROLLUP_COUNTS]
    rows = db.execute(
        select(d.shed_id, d.port, *sums)
        .where(d.compound_id == compound_id, d.day_ms >= period.start_ms, d.day_ms < period.end_ms)
        .group_by(d.shed_id, d.port)
    ).all()
    return {(r[0], r[1]): _counts(ROLLUP_COUNTS, r[2:]) for r in rows}


def _day_totals(db: Session, compound_id: str, period: Period) -> dict[int, Counts]:
    d = ReportSocketDay
    sums = [func.sum(getattr(d, name)) for name in ROLLUP_COUNTS]
    rows = db.execute(
        select(d.day_ms, *sums)
        .where(d.compound_id == compound_id, d.day_ms >= period.start_ms, d.day_ms < period.end_ms)
        .group_by(d.day_ms)
    ).all()
    return {r[0]: _counts(ROLLUP_COUNTS, r[1:]) for r in rows}


def _hour_totals(db: Session, compound_id: str, period: Period) -> dict[int, Counts]:
    h = ReportShedHour
    names = ("sessions", "in_use_ms", "unserved")
    rows = db.execute(
        select(h.hour_ms, *(func.sum(getattr(h, name)) for name in names))
        .where(
            h.compound_id == compound_id, h.hour_ms >= period.start_ms, h.hour_ms < period.end_ms
        )
        .group_by(h.hour_ms)
    ).all()
    return {r[0]: _counts(names, r[1:]) for r in rows}
