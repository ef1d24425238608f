"""Keeps the report rollups (`report_socket_days`, `report_shed_hours`).

Called by the uplink (api/services/uplink.py) inside the transaction that
applies a record, so a rollup changes exactly when the record is applied:

- `record_sessions`: the applied versions of a batch's session records. Each
  session's last contribution is kept (`report_contributions`); the rollups
  change by the difference, summed over the batch, so a replay changes
  nothing and a corrected version replaces what the earlier one added.
  `record_session`: the same for one session (the record-by-record path).
- `record_incident`: a safety alarm seen for the first time.
- `add_unserved` (api/reports/demand.py): a demand event.

`rebuild` refills a compound's rollups from the raw records: after an upgrade
that brought the rollups to a database with sessions in it, or a change of
the rules (`ebshed report --rebuild`).

Counters are added with one `INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n`
per table (compiled once), rows in key order (two transactions never lock
them crosswise).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from api.models import (
    HOUR_COUNTS,
    ROLLUP_COUNTS,
    Alarm,
    ChargeSession,
    DemandEvent,
    ReportContribution,
    ReportShedHour,
    ReportShedMonth,
    ReportSocketDay,
    Shed,
)
from api.reports.contribution import Contribution, SessionFigures, contribution
from api.reports.periods import day_start_ms, hour_start_ms, local_date, local_midnight_ms
from api.reports.reasons import SAFETY_ALARMS
from api.repos._dialect import Upsert, one_of, upsert

SHED_PORT = 0  # the shed itself, in report_socket_days


def _adding(model: type[Any], keys: tuple[str, ...], counters: tuple[str, ...]) -> Upsert:
    table = model.__table__
    return Upsert(
        table, keys, {n: f"{table.name}.{n} + excluded.{n}" for n in counters}, (keys[-1],)
    )


_ADD_DAYS = _adding(ReportSocketDay, ("shed_id", "port", "day_ms"), ROLLUP_COUNTS)
_ADD_HOURS = _adding(ReportShedHour, ("shed_id", "hour_ms"), HOUR_COUNTS)
_ADD_MONTHS = _adding(ReportShedMonth, ("shed_id", "month_ms"), ROLLUP_COUNTS)
_SET_PARTS = Upsert(
    ReportContribution.__table__,  # type: ignore[arg-type]
    ("shed_id", "session_id"),
    {"parts": "excluded.parts", "updated_ms": "excluded.updated_ms"},
    ("session_id",),
)


def figures(row: ChargeSession) -> SessionFigures:
    return SessionFigures(
        port=row.port,
        started_ms=row.started_ms,
        ended_ms=row.ended_ms,
        end_reason=row.end_reason,
        energy_wh=row.energy_wh,
        billed_fen=row.billed_fen,
        refund_fen=row.refund_fen,
    )


def record_session(db: Session, row: ChargeSession, now_ms: int) -> None:
    """Bring the rollups in line with this version of the session."""
    new = contribution(figures(row))
    stored = db.get(ReportContribution, (row.shed_id, row.id))
    old = Contribution.from_json(stored.parts) if stored is not None else Contribution()
    delta = new.minus(old)
    if delta.is_empty():
        return
    add(db, row.shed_id, delta)
    if stored is None:
        db.add(
            ReportContribution(
                shed_id=row.shed_id, session_id=row.id, parts=new.to_json(), updated_ms=now_ms
            )
        )
    else:
        stored.parts = new.to_json()
        stored.updated_ms = now_ms


def record_sessions(
    db: Session, shed_id: str, sessions: Sequence[tuple[str, SessionFigures]], now_ms: int
) -> None:
    """`record_session` for the newest version of each of these sessions (one
    per session id) of one shed: three statements, whatever their number."""
    if not sessions:
        return
    rc = ReportContribution
    query = select(rc.session_id, rc.parts).where(
        rc.shed_id == shed_id, one_of(db, rc.session_id, [sid for sid, _ in sessions])
    )
    stored: dict[str, dict[str, Any]] = {r.session_id: r.parts for r in db.execute(query)}
    total = Contribution()
    parts: list[dict[str, Any]] = []
    for session_id, figures_ in sessions:
        new = contribution(figures_)
        old = stored.get(session_id)
        delta = new.minus(Contribution.from_json(old)) if old is not None else new
        if delta.is_empty():
            continue
        total.merge(delta)
        parts.append(
            {"shed_id": shed_id, "session_id": session_id, "parts": new.to_json(),
             "updated_ms": now_ms}
        )  # fmt: skip
    if parts:
        add(db, shed_id, total)
        upsert(db, _SET_PARTS, parts)


def record_incident(db: Session, shed_id: str, port: int | None, raised_ms: int) -> None:
    key = (port or SHED_PORT, day_start_ms(raised_ms))
    add(db, shed_id, Contribution(days={key: {"incidents": 1}}))


def add_unserved(db: Session, shed_id: str, at_ms: int) -> None:
    add(
        db,
        shed_id,
        Contribution(
            days={(SHED_PORT, day_start_ms(at_ms)): {"unserved": 1}},
            hours={hour_start_ms(at_ms): {"unserved": 1}},
        ),
    )


def add(db: Session, shed_id: str, delta: Contribution) -> None:
    """Add `delta` to the rollup rows of the shed (creating them at zero)."""
    shed = db.get(Shed, shed_id)
    if shed is None:
        raise LookupError(f"no shed {shed_id!r}")
    base = {"shed_id": shed_id, "compound_id": shed.compound_id}
    day_rows = [
        {**base, "port": port, "day_ms": day, **_full(counts, ROLLUP_COUNTS)}
        for (port, day), counts in sorted(delta.days.items())
    ]
    hour_rows = [
        {**base, "hour_ms": hour, **_full(counts, HOUR_COUNTS)}
        for hour, counts in sorted(delta.hours.items())
    ]
    months: dict[int, dict[str, int]] = {}
    for (_port, day), counts in delta.days.items():
        into = months.setdefault(month_start_ms(day), {})
        for name, value in counts.items():
            into[name] = into.get(name, 0) + value
    month_rows = [
        {**base, "month_ms": month, **_full(counts, ROLLUP_COUNTS)}
        for month, counts in sorted(months.items())
    ]
    upsert(db, _ADD_DAYS, day_rows)
    upsert(db, _ADD_HOURS, hour_rows)
    upsert(db, _ADD_MONTHS, month_rows)


def month_start_ms(ms: int) -> int:
    """Epoch ms of the local midnight that begins the month `ms` falls in."""
    d = local_date(ms)
    return local_midnight_ms(date(d.year, d.month, 1))


def _full(counts: dict[str, int], names: tuple[str, ...]) -> dict[str, int]:
    unknown = counts.keys() - set(names)
    if unknown:
        raise ValueError(f"not a rollup counter: {sorted(unknown)}")
    return {name: counts.get(name, 0) for name in names}


def rebuild(db: Session, compound_id: str, now_ms: int) -> int:
    """Empty the compound's rollups and refill them from its sessions, safety
    alarms and demand events, in the caller's transaction. Returns the
    number of closed sessions counted."""
    sheds = list(db.scalars(select(Shed.id).where(Shed.compound_id == compound_id)))
    db.execute(delete(ReportSocketDay).where(ReportSocketDay.compound_id == compound_id))
    db.execute(delete(ReportShedHour).where(ReportShedHour.compound_id == compound_id))
    db.execute(delete(ReportShedMonth).where(ReportShedMonth.compound_id == compound_id))
    db.execute(delete(ReportContribution).where(ReportContribution.shed_id.in_(sheds)))
    counted = 0
    for shed_id in sheds:
        total = Contribution()
        c = ChargeSession
        sessions = db.execute(
            select(
                c.id,
                c.port,
                c.started_ms,
                c.ended_ms,
                c.end_reason,
                c.energy_wh,
                c.billed_fen,
                c.refund_fen,
            ).where(c.shed_id == shed_id, c.ended_ms.is_not(None))
        )
        for session_id, port, started, ended, reason, energy, billed, refund in sessions:
            part = contribution(
                SessionFigures(port, started, ended, reason, energy, billed, refund)
            )
            total.merge(part)
            db.add(
                ReportContribution(
                    shed_id=shed_id, session_id=session_id, parts=part.to_json(), updated_ms=now_ms
                )
            )
            counted += 1
        alarms = db.execute(
            select(Alarm.port, Alarm.raised_ms).where(
                Alarm.shed_id == shed_id, Alarm.kind.in_(SAFETY_ALARMS)
            )
        )
        for alarm_port, raised_ms in alarms:
            total.merge(
                Contribution(
                    days={(alarm_port or SHED_PORT, day_start_ms(raised_ms)): {"incidents": 1}}
                )
            )
        events = db.scalars(select(DemandEvent.at_ms).where(DemandEvent.shed_id == shed_id))
        for at_ms in events:
            total.merge(
                Contribution(
                    days={(SHED_PORT, day_start_ms(at_ms)): {"unserved": 1}},
                    hours={hour_start_ms(at_ms): {"unserved": 1}},
                )
            )
        if not total.is_empty():
            add(db, shed_id, total)
        db.flush()
    return counted
