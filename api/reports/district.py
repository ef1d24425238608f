"""The district-wide report: every compound, per shed and per local month.

`district_report` reads the month rollups (`report_shed_months`: a year is
sheds x 12 rows, whatever the number of sessions). `raw_district_report`
answers the same with GROUP BY queries over the raw sessions, safety alarms
and demand events, by the rules of `contribution.py` (sessions, money and
end reasons count in the month a session started; in-use time is split at
the month boundaries, up to `MAX_IN_USE_MS`): the benchmark's baseline
(bench/reports.py), and the check that the rollups add up. Both give the
same `District`, figure for figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from api.models import ROLLUP_COUNTS, ReportShedMonth, Shed, Socket
from api.reports.contribution import MAX_IN_USE_MS
from api.reports.model import FIGURES, Counts, Table, _figures
from api.reports.periods import local_date, local_midnight_ms
from api.reports.reasons import END_GROUPS, SAFETY_ALARMS, reasons_in

COLUMNS = ("compound", "shed", "shed_name", "month", "socket_count", *FIGURES)


@dataclass(frozen=True, slots=True)
class District:
    start_ms: int
    end_ms: int
    totals: Mapping[tuple[str, int], Counts]  # (shed, month_ms): the counts, none all zero
    table: Table  # a row per shed and month: COLUMNS


def months_of(start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """(start, end) of each local month from `start_ms` (a month's first
    midnight) up to `end_ms`."""
    out: list[tuple[int, int]] = []
    first = local_date(start_ms)
    at = date(first.year, first.month, 1)
    begin = local_midnight_ms(at)
    if begin != start_ms:
        raise ValueError("the period must begin at the start of a local month")
    while begin < end_ms:
        at = date(at.year + at.month // 12, at.month % 12 + 1, 1)
        end = local_midnight_ms(at)
        out.append((begin, end))
        begin = end
    return out


def district_report(db: Session, start_ms: int, end_ms: int) -> District:
    m = ReportShedMonth
    rows = db.execute(
        select(m.shed_id, m.month_ms, *(getattr(m, n) for n in ROLLUP_COUNTS)).where(
            m.month_ms >= start_ms, m.month_ms < end_ms
        )
    )
    totals = {(r[0], r[1]): dict(zip(ROLLUP_COUNTS, map(int, r[2:]), strict=True)) for r in rows}
    return _district(db, start_ms, end_ms, totals)


def raw_district_report(db: Session, start_ms: int, end_ms: int) -> District:
    months = months_of(start_ms, end_ms)
    postgres = db.get_bind().dialect.name == "postgresql"
    least, greatest = ("least", "greatest") if postgres else ("min", "max")
    values = ", ".join(f"({a}, {b})" for a, b in months)
    with_months = f"WITH months(month_ms, end_ms) AS (VALUES {values}) "
    params: dict[str, Any] = {"start": start_ms, "end": end_ms, "cap": MAX_IN_USE_MS}
    groups = []
    for group in END_GROUPS:
        if group == "other":
            known = [r for g in END_GROUPS if g != "other" for r in reasons_in(g)]
            cond = f"(end_reason IS NULL OR end_reason NOT IN ({_quoted(known)}))"
        else:
            cond = f"end_reason IN ({_quoted(reasons_in(group))})"
        groups.append(f"sum(CASE WHEN {cond} THEN 1 ELSE 0 END)")
    started = db.execute(
        text(
            with_months + "SELECT s.shed_id, m.month_ms, count(*), sum(s.energy_wh), "
            "sum(s.billed_fen), sum(s.refund_fen), sum(s.ended_ms - s.started_ms), "
            + ", ".join(groups)
            + " FROM charge_sessions s JOIN months m"
            " ON s.started_ms >= m.month_ms AND s.started_ms < m.end_ms"
            " WHERE s.ended_ms IS NOT NULL AND s.started_ms >= :start AND s.started_ms < :end"
            " GROUP BY s.shed_id, m.month_ms"
        ),
        params,
    )
    totals: dict[tuple[str, int], dict[str, int]] = {}
    names: tuple[str, ...] = (
        *("sessions", "energy_wh", "billed_fen", "refund_fen", "duration_ms"),
        *(f"end_{g}" for g in END_GROUPS),
    )
    for shed_id, month_ms, *counts in started:
        totals[(shed_id, month_ms)] = dict(zip(names, map(int, counts), strict=True))
    held = f"{least}(s.ended_ms, s.started_ms + :cap)"
    in_use = db.execute(
        text(
            with_months + f"SELECT s.shed_id, m.month_ms, "
            f"sum({least}({held}, m.end_ms) - {greatest}(s.started_ms, m.month_ms))"
            " FROM charge_sessions s JOIN months m"
            f" ON s.started_ms < m.end_ms AND {held} > m.month_ms"
            " WHERE s.ended_ms IS NOT NULL AND s.started_ms >= :start - :cap"
            " AND s.started_ms < :end GROUP BY s.shed_id, m.month_ms"
        ),
        params,
    )
    for shed_id, month_ms, ms in in_use:
        _bump(totals, (shed_id, month_ms), "in_use_ms", int(ms))
    for name, sql in (
        ("incidents", f"FROM alarms a JOIN months m ON a.raised_ms >= m.month_ms "
         f"AND a.raised_ms < m.end_ms WHERE a.kind IN ({_quoted(sorted(SAFETY_ALARMS))})"),
        ("unserved", "FROM demand_events a JOIN months m ON a.at_ms >= m.month_ms "
         "AND a.at_ms < m.end_ms"),
    ):  # fmt: skip
        counted = db.execute(
            text(
                with_months + f"SELECT a.shed_id, m.month_ms, count(*) {sql} "
                "GROUP BY a.shed_id, m.month_ms"
            )
        )
        for shed_id, month_ms, n in counted:
            _bump(totals, (shed_id, month_ms), name, int(n))
    full = {key: {n: counts.get(n, 0) for n in ROLLUP_COUNTS} for key, counts in totals.items()}
    return _district(db, start_ms, end_ms, full)


def _quoted(words: Any) -> str:
    return ", ".join("'" + w.replace("'", "''") + "'" for w in words)


def _bump(totals: dict[tuple[str, int], dict[str, int]], key: tuple[str, int], name: str,
          value: int) -> None:  # fmt: skip
    counts = totals.setdefault(key, {})
    counts[name] = counts.get(name, 0) + value


def _district(
    db: Session, start_ms: int, end_ms: int, totals: Mapping[tuple[str, int], dict[str, int]]
) -> District:
    kept = {key: counts for key, counts in totals.items() if any(counts.values())}
    sheds = db.execute(select(Shed.id, Shed.name, Shed.compound_id).order_by(Shed.id)).all()
    counted = db.execute(select(Socket.shed_id, func.count()).group_by(Socket.shed_id))
    sockets = {row[0]: int(row[1]) for row in counted}
    table = Table("district", list(COLUMNS))
    empty: dict[str, int] = {}
    for month_ms, month_end in months_of(start_ms, end_ms):
        label = local_date(month_ms).strftime("%Y-%m")
        for shed_id, name, compound_id in sheds:
            n = int(sockets.get(shed_id, 0))
            counts = kept.get((shed_id, month_ms), empty)
            figures = _figures(counts, n * (month_end - month_ms))
            table.rows.append([compound_id, shed_id, name, label, n, *figures])
    return District(start_ms, end_ms, kept, table)
