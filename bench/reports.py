"""`ebshed bench reports`: a monthly report from the rollups against the same
report computed by scanning raw sessions, on a year of a large district.

The district (default 20 compounds x 5 sheds x 48 sockets = 4,800 sockets)
gets a year of sessions shaped like a real shed's day (evening arrivals that
charge overnight, midday riders, idle days): about 1.25 sessions per socket a
day, 2.2 million in all. They are written as raw `charge_sessions` rows, and
the rollups are written from the same sessions with the same pure rules the
uplink uses (`api/reports/contribution.py`), in bulk: pushing 2.3 million
records through HTTP would measure the loader, not the report. The upkeep per
session on the uplink's own path is measured separately (`upkeep_ms`).

Then, for one compound and one month, side by side and alternating: the
report from the rollups (`queries.report`) and from the raw rows
(`raw.raw_report`); each best of `repeat`. The two reports must be equal.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.engine import make_url

from api.db import make_engine, make_sessionmaker, normalize_url, upgrade
from api.models import ChargeSession, Compound, ReportShedHour, ReportSocketDay, Shed, Socket
from api.reports import queries
from api.reports.contribution import SessionFigures, contribution
from api.reports.periods import DAY_MS, HOUR_MS, MINUTE_MS, month
from api.reports.raw import raw_report
from api.schemas.records import RecordEnvelope
from api.services.hooks import Hooks
from api.services.uplink import apply_record
from bench.common import result

TARGET_MS = 500.0
CHUNK = 20_000
REASONS = (
    ("full",) * 6 + ("unplugged",) * 2 + ("money_used_up", "overtemp", "resident", "session_cap")
)


def run(
    *,
    compounds: int = 20,
    sheds: int = 5,
    sockets: int = 48,
    days: int = 365,
    first_day: str = "2025-12-01",
    report_month: str = "2026-11",
    backend: str = "sqlite",
    postgres: str = "postgresql://postgres@127.0.0.1:5432/test",
    repeat: int = 3,
    seed: int = 11,
) -> dict[str, Any]:
    with _database(backend, postgres) as url:
        upgrade(url)
        engine = make_engine(url)
        try:
            loaded = _load(engine, compounds, sheds, sockets, days, first_day, seed)
            upkeep_ms = _upkeep(engine, f"c{compounds - 1:02d}-s0", sockets)
            rollup_ms, raw_ms = _measure(engine, "c00", report_month, repeat)
        finally:
            engine.dispose()
    ratio = raw_ms / rollup_ms if rollup_ms else None
    return result(
        "reports",
        round(rollup_ms, 1),
        "ms",
        f"a month of one {sheds * sockets}-socket compound from the rollups in under "
        f"{TARGET_MS:.0f} ms, on a year of {compounds * sheds * sockets} sockets",
        rollup_ms < TARGET_MS,
        baseline=round(raw_ms, 1),
        ratio=round(ratio, 1) if ratio else None,
        backend=backend,
        sessions=loaded["sessions"],
        socket_day_rows=loaded["socket_days"],
        shed_hour_rows=loaded["shed_hours"],
        load_s=loaded["load_s"],
        upkeep_ms_per_session=round(upkeep_ms, 3),
        month=report_month,
    )


# ------------------------------------------------------------------ the database


class _database:
    """A throwaway database: a temporary SQLite file, or a new PostgreSQL database."""

    def __init__(self, backend: str, postgres: str) -> None:
        if backend not in ("sqlite", "postgresql"):
            raise ValueError("backend must be sqlite or postgresql")
        self.backend, self.server_url = backend, normalize_url(postgres)
        self.tmp: tempfile.TemporaryDirectory[str] | None = None
        self.server: Engine | None = None
        self.name = f"ebshed_bench_{uuid.uuid4().hex[:10]}"

    def __enter__(self) -> str:
        if self.backend == "sqlite":
            self.tmp = tempfile.TemporaryDirectory(prefix="ebshed-bench-")
            return f"sqlite:///{Path(self.tmp.name) / 'central.sqlite'}"
        self.server = create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        with self.server.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        url = make_url(self.server_url).set(database=self.name)
        return url.render_as_string(hide_password=False)

    def __exit__(self, *_exc: object) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()
        if self.server is not None:
            with self.server.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            self.server.dispose()


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
    count = day_count = hour_count = 0
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
        day_count, hour_count = day_count + len(day_rows), hour_count + len(hour_rows)
        for table, batch in ((ReportSocketDay, day_rows), (ReportShedHour, hour_rows)):
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
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(table), rows)
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
