"""`ebshed bench reports`: the community office reports on a year of a
district, from the rollups against the same figures from the raw sessions.

The district (default 20 compounds x 10 sheds x 33 sockets = 6,600 sockets)
gets a year of sessions shaped like a real shed's day (evening arrivals that
charge overnight, midday riders, idle days): about 1.25 sessions per socket a
day, 3 million in all. They are written as raw `charge_sessions` rows, and
the rollups are written from the same sessions with the same pure rules the
uplink uses (`api/reports/contribution.py`), in bulk (COPY on PostgreSQL):
pushing 3 million records through HTTP would measure the loader, not the
report (`ebshed bench ingest` measures that). The upkeep per session on the
uplink's record-by-record path is measured separately (`upkeep_ms`).

Then, side by side and alternating, each best of `repeat`:

- one compound's month: the report from the rollups (`queries.report`)
  against the same report from the raw rows (`raw.raw_report`);
- the district's year (every compound, per shed and per month): from the
  month rollups (`district.district_report`) against GROUP BY queries over
  the raw sessions (`district.raw_district_report`).

Each pair must be equal, table for table, or the run fails.
"""

from __future__ import annotations

import json
import random
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from sqlalchemy import JSON, Engine, insert, text

from api.db import make_engine, make_sessionmaker, upgrade
from api.models import (
    ChargeSession,
    Compound,
    ReportShedHour,
    ReportShedMonth,
    ReportSocketDay,
    Shed,
    Socket,
)
from api.reports import queries
from api.reports.contribution import SessionFigures, contribution
from api.reports.district import district_report, raw_district_report
from api.reports.periods import DAY_MS, HOUR_MS, MINUTE_MS, month
from api.reports.raw import raw_report
from api.reports.rollups import month_start_ms
from api.schemas.records import RecordEnvelope
from api.services.hooks import Hooks
from api.services.uplink import apply_record
from bench.common import result, throwaway_database

TARGET_MONTH_MS = 50.0
TARGET_YEAR_MS = 300.0
TARGET_YEAR_RATIO = 20.0
CHUNK = 20_000
REASONS = (
    ("full",) * 6 + ("unplugged",) * 2 + ("money_used_up", "overtemp", "resident", "session_cap")
)


def run(
    *,
    compounds: int = 20,
    sheds: int = 10,
    sockets: int = 33,
    days: int = 365,
    first_day: str = "2025-12-01",
    report_month: str = "2026-11",
    backend: str = "postgresql",
    postgres: str = "postgresql://postgres@127.0.0.1:5432/test",
    repeat: int = 5,
    seed: int = 11,
) -> dict[str, Any]:
    with throwaway_database(backend, postgres) as url:
        upgrade(url)
        engine = make_engine(url)
        try:
            loaded = _load(engine, compounds, sheds, sockets, days, first_day, seed)
            upkeep_ms = _upkeep(engine, f"c{compounds - 1:02d}-s0", sockets)
            rollup_ms, raw_ms = _measure(engine, "c00", report_month, repeat)
            year_start = month(first_day[:7]).start_ms
            year_end = month(report_month).end_ms
            year_ms, year_raw_ms, rows = _measure_district(engine, year_start, year_end, repeat)
        finally:
            engine.dispose()
    ratio = raw_ms / rollup_ms if rollup_ms else None
    year_ratio = year_raw_ms / year_ms if year_ms else None
    met = (
        rollup_ms < TARGET_MONTH_MS
        and year_ms < TARGET_YEAR_MS
        and year_ratio is not None
        and year_ratio >= TARGET_YEAR_RATIO
    )
    return result(
        "reports",
        round(rollup_ms, 1),
        "ms",
        f"a month of one {sheds * sockets}-socket compound from the rollups in under "
        f"{TARGET_MONTH_MS:.0f} ms, and the district's year (every compound, per shed and "
        f"per month) in under {TARGET_YEAR_MS:.0f} ms and at least {TARGET_YEAR_RATIO:.0f}x "
        f"a GROUP BY over the raw sessions, on a year of {compounds * sheds * sockets} sockets",
        met,
        baseline=round(raw_ms, 1),
        ratio=round(ratio, 1) if ratio else None,
        backend=backend,
        sessions=loaded["sessions"],
        socket_day_rows=loaded["socket_days"],
        shed_hour_rows=loaded["shed_hours"],
        shed_month_rows=loaded["shed_months"],
        load_s=loaded["load_s"],
        upkeep_ms_per_session=round(upkeep_ms, 3),
        month=report_month,
        district_year_ms=round(year_ms, 1),
        district_year_raw_ms=round(year_raw_ms, 1),
        district_year_ratio=round(year_ratio, 1) if year_ratio else None,
        district_rows=rows,
    )


# ------------------------------------------------------------------ a year of a district


def _day_sessions(rng: random.Random, day_ms: int) -> Iterator[tuple[int, int]]:
    """(start, minutes) of one socket's sessions in one local day, never overlapping."""
    busy_until = day_ms
    if rng.random() < 0.3:  # a delivery rider at midday
        start = day_ms + 11 * HOUR_MS + rng.randrange(4 * 60) * MINUTE_MS
        minutes = rng.randrange(60, 240)
        busy_until = start + minutes * MINUTE_MS
        yield start, minutes
    if rng.random() < 0.95:  # the overnight charge after work
        start = max(busy_until, day_ms + 17 * HOUR_MS + rng.randrange(5 * 60) * MINUTE_MS)
        yield start, rng.randrange(240, 12 * 60)


def _load(
    engine: Engine,
    compounds: int,
    sheds: int,
    sockets: int,
    days: int,
    first_day: str,
    seed: int,
) -> dict[str, Any]:
    started = time.perf_counter()
    rng = random.Random(seed)
    start_day = month(first_day[:7]).start_ms + (int(first_day[8:10]) - 1) * DAY_MS
    socket_days: defaultdict[tuple[str, int, int], dict[str, int]] = defaultdict(dict)
    shed_hours: defaultdict[tuple[str, int], dict[str, int]] = defaultdict(dict)
    compound_of: dict[str, str] = {}
    with engine.begin() as conn:
        for c in range(compounds):
            cid = f"c{c:02d}"
            conn.execute(insert(Compound), [{"id": cid, "name": f"小区 {c}", "created_ms": 0}])
            for s in range(sheds):
                sid = f"{cid}-s{s}"
                compound_of[sid] = cid
                conn.execute(
                    insert(Shed),
                    [
                        {
                            "id": sid,
                            "compound_id": cid,
                            "name": sid,
                            "token_hash": uuid.uuid4().hex * 2,
                            "created_ms": 0,
                            "command_seq": 0,
                        }
                    ],
                )
                conn.execute(
                    insert(Socket),
                    [
                        {"shed_id": sid, "port": p, "state": "idle", "since_ms": 0, "updated_ms": 0}
                        for p in range(1, sockets + 1)
                    ],
                )
    rows: list[dict[str, Any]] = []
    count = day_count = hour_count = month_count = 0
    for sid, cid in compound_of.items():  # one shed at a time: its rollups, then the next
        for port in range(1, sockets + 1):
            for d in range(days):
                for start, minutes in _day_sessions(rng, start_day + d * DAY_MS):
                    energy = rng.randrange(50, 1300)
                    billed = rng.randrange(0, 400)
                    figures = SessionFigures(
                        port,
                        start,
                        start + minutes * MINUTE_MS,
                        rng.choice(REASONS),
                        energy,
                        billed,
                        400 - billed,
                    )
                    count += 1
                    rows.append(_session_row(sid, f"{count:x}", figures))
                    part = contribution(figures)
                    for (p, day), counts in part.days.items():
                        _add(socket_days[(sid, p, day)], counts)
                    for hour, counts in part.hours.items():
                        _add(shed_hours[(sid, hour)], counts)
                    if len(rows) >= CHUNK:
                        _flush(engine, ChargeSession, rows)
        day_rows = [
            {"shed_id": sid, "port": p, "day_ms": d, "compound_id": cid, **c}
            for (_s, p, d), c in socket_days.items()
        ]
        hour_rows = [
            {"shed_id": sid, "hour_ms": h, "compound_id": cid, **c}
            for (_s, h), c in shed_hours.items()
        ]
        months: defaultdict[int, dict[str, int]] = defaultdict(dict)
        for (_s, _p, d), day_counts in socket_days.items():
            _add(months[month_start_ms(d)], day_counts)
        month_rows = [
            {"shed_id": sid, "month_ms": m, "compound_id": cid, **mc} for m, mc in months.items()
        ]
        day_count, hour_count = day_count + len(day_rows), hour_count + len(hour_rows)
        month_count += len(month_rows)
        for table, batch in (
            (ReportSocketDay, day_rows),
            (ReportShedHour, hour_rows),
            (ReportShedMonth, month_rows),
        ):
            for i in range(0, len(batch), CHUNK):
                _flush(engine, table, _uniform(batch[i : i + CHUNK], table))
        socket_days.clear()
        shed_hours.clear()
    _flush(engine, ChargeSession, rows)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))
        else:
            conn.exec_driver_sql("ANALYZE")
        conn.commit()
    return {
        "sessions": count,
        "socket_days": day_count,
        "shed_hours": hour_count,
        "shed_months": month_count,
        "load_s": round(time.perf_counter() - started, 1),
    }


def _session_row(shed_id: str, sid: str, f: SessionFigures) -> dict[str, Any]:
    return {
        "shed_id": shed_id,
        "id": sid,
        "port": f.port,
        "auth_kind": "order",
        "auth_ref": f"EBS{sid}",
        "auth_mode": "amount",
        "prepaid_fen": 400,
        "order_no": None,
        "tariff_id": None,
        "tariff_version": None,
        "tariff": None,
        "started_ms": f.started_ms,
        "stop_ms": f.ended_ms,
        "ended_ms": f.ended_ms,
        "end_reason": f.end_reason,
        "first_wh": 0,
        "last_wh": f.energy_wh,
        "energy_wh": f.energy_wh,
        "peak_w": 300.0,
        "billed_fen": f.billed_fen,
        "refund_fen": f.refund_fen,
        "flags": [],
        "bill": None,
        "data": {},
        "version": 2,
        "reported_ms": f.ended_ms,
        "received_ms": f.ended_ms,
        "closed_received_ms": f.ended_ms,
    }


def _add(into: dict[str, int], counts: dict[str, int]) -> None:
    for name, value in counts.items():
        into[name] = into.get(name, 0) + value


def _uniform(rows: list[dict[str, Any]], table: Any) -> list[dict[str, Any]]:
    """Every row with every counter (executemany wants the same keys)."""
    names = [c.name for c in table.__table__.columns]
    return [{name: row.get(name, 0) for name in names} for row in rows]


def _flush(engine: Engine, table: Any, rows: list[dict[str, Any]]) -> None:
    """Write the rows (and forget them): COPY on PostgreSQL, INSERT on SQLite."""
    if not rows:
        return
    if engine.dialect.name != "postgresql":
        with engine.begin() as conn:
            conn.execute(insert(table), rows)
        rows.clear()
        return
    columns = list(table.__table__.columns)
    names = [c.name for c in columns]
    is_json = [isinstance(c.type, JSON) for c in columns]
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy(f"COPY {table.__tablename__} ({', '.join(names)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(
                    [
                        json.dumps(row[n]) if j else row[n]
                        for n, j in zip(names, is_json, strict=True)
                    ]
                )
        raw.commit()
    finally:
        raw.close()
    rows.clear()


# ------------------------------------------------------------------ measurements


def _upkeep(engine: Engine, shed_id: str, sockets: int, n: int = 500) -> float:
    """ms per closing session record applied on the uplink's path (rollups included)."""
    sessions = make_sessionmaker(engine)
    hooks = Hooks(session_closed=[])
    t0 = month("2026-11").start_ms + 18 * HOUR_MS
    timings = []
    for i in range(n):
        ended = t0 + i * MINUTE_MS + 7 * HOUR_MS
        data: dict[str, Any] = {
            "id": f"u{i}",
            "port": 1 + i % sockets,
            "started_ms": t0 + i * MINUTE_MS,
            "ended_ms": t0 + i * MINUTE_MS + 7 * HOUR_MS,
            "end_reason": "full",
            "energy_wh": 700,
            "billed_fen": 150,
            "refund_fen": 250,
            "auth": {"kind": "order", "ref": f"EBSU{i}", "prepaid_fen": 400},
        }
        record = RecordEnvelope(
            id=f"r{i}", kind="session", key=f"u{i}", version=1, ts=ended, data=data
        )
        begin = time.perf_counter()
        with sessions.begin() as db:
            apply_record(db, shed_id, record, now_ms=ended, hooks=hooks)
        timings.append(time.perf_counter() - begin)
    return statistics.median(timings) * 1000


def _measure(engine: Engine, compound: str, month_text: str, repeat: int) -> tuple[float, float]:
    sessions = make_sessionmaker(engine)
    period = month(month_text)
    rollup_times, raw_times = [], []
    for _ in range(repeat):
        with sessions() as db:
            begin = time.perf_counter()
            fast = queries.report(db, compound, period)
            rollup_times.append(time.perf_counter() - begin)
        with sessions() as db:
            begin = time.perf_counter()
            slow = raw_report(db, compound, period)
            raw_times.append(time.perf_counter() - begin)
        if fast.tables != slow.tables:
            raise AssertionError("the rollup report and the raw report differ")
    return min(rollup_times) * 1000, min(raw_times) * 1000


def _measure_district(
    engine: Engine, start_ms: int, end_ms: int, repeat: int
) -> tuple[float, float, int]:
    """Best ms of the district's year from the month rollups and from the raw rows."""
    sessions = make_sessionmaker(engine)
    rollup_times, raw_times = [], []
    rows = 0
    for _ in range(repeat):
        with sessions() as db:
            begin = time.perf_counter()
            fast = district_report(db, start_ms, end_ms)
            rollup_times.append(time.perf_counter() - begin)
        with sessions() as db:
            begin = time.perf_counter()
            slow = raw_district_report(db, start_ms, end_ms)
            raw_times.append(time.perf_counter() - begin)
        if fast.totals != slow.totals or fast.table.rows != slow.table.rows:
            raise AssertionError(
                "the district report from the rollups and from the raw rows differ"
            )
        rows = len(fast.table.rows)
    return min(rollup_times) * 1000, min(raw_times) * 1000, rows
