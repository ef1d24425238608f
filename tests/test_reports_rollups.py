"""Report rollups: kept by the uplink as records arrive, exactly once, and a
monthly report from them equals the figures computed here from the raw
sessions (with the standard library's own Asia/Shanghai calendar)."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from api.models import ReportContribution, ReportSocketDay
from api.reports import queries
from api.reports.contribution import Contribution, SessionFigures, contribution
from api.reports.periods import PeriodError, parse_period, period_of
from api.reports.raw import raw_report
from api.reports.reasons import end_group

if TYPE_CHECKING:
    from api.reports.model import Report
    from tests.api_db import Api

pytest_plugins = ["tests.api_db"]

SHANGHAI = ZoneInfo("Asia/Shanghai")
HOUR = 3_600_000
MINUTE = 60_000


def local_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp() * 1000)


NOV_START = local_ms("2026-11-01T00:00")
DEC_START = local_ms("2026-12-01T00:00")


# ------------------------------------------------------------------ pure parts


def test_periods_are_local_china_days_weeks_and_months() -> None:
    month = parse_period("month", "2026-11")
    assert (month.start_ms, month.end_ms, month.days) == (NOV_START, DEC_START, 30)
    week = parse_period("week", "2026-W45")  # Monday 2 November to Sunday 8 November
    assert week.start_ms == local_ms("2026-11-02T00:00")
    assert week.end_ms == local_ms("2026-11-09T00:00")
    day = parse_period("day", "2026-02-28")
    assert (day.start_ms, day.end_ms - day.start_ms) == (local_ms("2026-02-28T00:00"), 24 * HOUR)
    assert parse_period("month", "2026-12").end_ms == local_ms("2027-01-01T00:00")
    year = parse_period("year", "2028")  # a leap year
    assert (year.label, year.days) == ("2028", 366)
    assert year.start_ms == local_ms("2028-01-01T00:00")
    assert year.end_ms == local_ms("2029-01-01T00:00")
    assert period_of("year", local_ms("2026-12-31T23:59")).label == "2026"
    assert period_of("year", local_ms("2027-01-01T00:00")).label == "2027"


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("month", "2026-13"),
        ("month", "2026-1"),
        ("month", "26-11"),
        ("month", "1999-12"),
        ("week", "2026-W54"),
        ("week", "2026-W00"),
        ("day", "2026-02-30"),
        ("day", "2026/02/01"),
        ("year", "26"),
        ("year", "2026-01"),
        ("year", "1999"),
        ("quarter", "2026"),
    ],
)
def test_malformed_periods_are_refused(kind: str, value: str) -> None:
    with pytest.raises(PeriodError) as err:
        parse_period(kind, value)
    assert err.value.code == "bad_period"


@pytest.mark.parametrize(
    ("reason", "group"),
    [
        ("full", "full"),
        ("unplugged", "unplugged"),
        ("money_used_up", "money"),
        ("overtemp", "safety"),
        ("overpower", "safety"),
        ("smoke", "safety"),
        ("relay_fault", "safety"),
        ("button", "stopped"),
        ("resident", "stopped"),
        ("card_stop", "stopped"),
        ("staff", "stopped"),
        ("session_cap", "other"),
        ("no_load", "other"),
        ("something_new", "other"),
        (None, "other"),
    ],
)
def test_end_reasons_fall_into_the_report_groups(reason: str | None, group: str) -> None:
    assert end_group(reason) == group


def test_a_session_is_split_over_the_local_hours_and_days_it_spans() -> None:
    start = local_ms("2026-11-30T23:30")
    figures = SessionFigures(7, start, start + 90 * MINUTE, "full", 812, 150, 50)
    part = contribution(figures)
    nov30, dec1 = local_ms("2026-11-30T00:00"), local_ms("2026-12-01T00:00")
    assert part.days == {
        (7, nov30): {
            "sessions": 1,
            "energy_wh": 812,
            "billed_fen": 150,
            "refund_fen": 50,
            "duration_ms": 90 * MINUTE,
            "end_full": 1,
            "in_use_ms": 30 * MINUTE,
        },
        (7, dec1): {"in_use_ms": 60 * MINUTE},
    }
    assert part.hours == {
        local_ms("2026-11-30T23:00"): {"sessions": 1, "in_use_ms": 30 * MINUTE},
        local_ms("2026-12-01T00:00"): {"in_use_ms": 60 * MINUTE},
    }
    assert contribution(SessionFigures(7, start, None, None, 5, 0, 0)).is_empty()


def test_a_correction_contributes_the_difference_only() -> None:
    start = local_ms("2026-11-10T20:00")
    first = contribution(SessionFigures(1, start, start + HOUR, "unplugged", 300, 100, 0))
    fixed = contribution(SessionFigures(1, start, start + HOUR, "full", 320, 100, 0))
    day = local_ms("2026-11-10T00:00")
    assert fixed.minus(first).days == {
        (1, day): {"energy_wh": 20, "end_full": 1, "end_unplugged": -1}
    }
    assert fixed.minus(first).hours == {}
    assert fixed.minus(fixed).is_empty()
    assert Contribution.from_json(fixed.to_json()) == fixed


# ------------------------------------------------------------------ through the uplink


def record(kind: str, key: str, version: int, ts: int, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"r-{uuid.uuid4().hex[:12]}",
        "kind": kind,
        "key": key,
        "version": version,
        "ts": ts,
        "data": data,
    }


def session_data(
    sid: str,
    port: int,
    start: int,
    minutes: int | None,
    reason: str | None,
    energy_wh: int,
    billed: int,
    refund: int,
) -> dict[str, Any]:
    return {
        "id": sid,
        "port": port,
        "auth": {"kind": "order", "ref": f"EBS{sid}", "prepaid_fen": 500, "mode": "amount"},
        "started_ms": start,
        "ended_ms": None if minutes is None else start + minutes * MINUTE,
        "end_reason": reason,
        "energy_wh": energy_wh,
        "billed_fen": billed,
        "refund_fen": refund,
    }


async def uplink(api: Api, shed_id: str, headers: dict[str, str], records: list[Any]) -> Any:
    for i in range(0, len(records), 400):
        response = await api.client.post(
            f"/api/v1/sheds/{shed_id}/uplink",
            json={"records": records[i : i + 400]},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["rejected"] == []
    return response.json()


REASONS = [
    "full",
    "full",
    "full",
    "unplugged",
    "money_used_up",
    "overtemp",
    "resident",
    "session_cap",
    "no_load",
]


def simulated_month(seed: int, ports: int) -> list[dict[str, Any]]:
    """Sessions from 29 October to 2 December, local time: evening arrivals
    charging overnight, midday riders, some across midnight and the month's ends."""
    rng = random.Random(seed)
    sessions = []
    day0 = local_ms("2026-10-29T00:00")
    for day in range(35):
        for port in range(1, ports + 1):
            for _ in range(rng.choice((0, 1, 1, 2))):
                hour = rng.choice((8, 12, 13, 18, 19, 19, 20, 21, 22, 23))
                start = day0 + day * 24 * HOUR + hour * HOUR + rng.randrange(60) * MINUTE
                minutes = rng.randrange(5, 12 * 60)
                energy = rng.randrange(0, 1200)
                billed = rng.randrange(0, 500)
                sessions.append(
                    session_data(
                        f"s{seed}-{day}-{port}-{len(sessions)}",
                        port,
                        start,
                        minutes,
                        rng.choice(REASONS),
                        energy,
                        billed,
                        500 - billed,
                    )
                )
    return sessions


def expected_month(sessions: list[dict[str, Any]], sockets: int) -> dict[str, Any]:
    """November's figures straight from the sessions, with datetime and zoneinfo."""
    month = [
        s
        for s in sessions
        if datetime.fromtimestamp(s["started_ms"] / 1000, SHANGHAI).strftime("%Y-%m") == "2026-11"
    ]
    in_use = sum(
        max(0, min(s["ended_ms"], DEC_START) - max(s["started_ms"], NOV_START)) for s in sessions
    )
    by_day = Counter(
        datetime.fromtimestamp(s["started_ms"] / 1000, SHANGHAI).date().isoformat() for s in month
    )
    heat = Counter()
    for s in month:
        t = datetime.fromtimestamp(s["started_ms"] / 1000, SHANGHAI)
        heat[(t.weekday(), t.hour)] += 1
    groups = {
        "full": "full",
        "unplugged": "unplugged",
        "money_used_up": "money",
        "overtemp": "safety",
        "resident": "stopped",
    }
    return {
        "sessions": len(month),
        "energy_kwh": round(sum(s["energy_wh"] for s in month) / 1000, 3),
        "revenue_yuan": round(sum(s["billed_fen"] for s in month) / 100, 2),
        "refunds_yuan": round(sum(s["refund_fen"] for s in month) / 100, 2),
        "avg_session_min": round(
            sum(s["ended_ms"] - s["started_ms"] for s in month) / len(month) / MINUTE, 1
        ),
        "utilisation_pct": round(100 * in_use / (sockets * (DEC_START - NOV_START)), 1),
        "by_day": by_day,
        "heat": heat,
        "ends": Counter(groups.get(s["end_reason"], "other") for s in month),
    }


def check_report(report: Report, expected: dict[str, Any]) -> None:
    summary = report.summary()
    for name in (
        "sessions",
        "energy_kwh",
        "revenue_yuan",
        "refunds_yuan",
        "avg_session_min",
        "utilisation_pct",
    ):
        assert summary[name] == expected[name], name
    days = {row["date"]: row["sessions"] for row in report.table("days").as_dicts()}
    assert len(days) == 30
    assert {d: n for d, n in days.items() if n} == dict(expected["by_day"])
    heat = {
        (row[0], h): n for row in report.table("heatmap").rows for h, n in enumerate(row[1:]) if n
    }
    assert heat == dict(expected["heat"])
    ends = {row[0]: row[1] for row in report.table("end_reasons").rows if row[1]}
    assert ends == dict(expected["ends"])


async def test_monthly_report_equals_figures_from_the_raw_sessions(api: Api) -> None:
    shed_a, auth_a = await api.register_shed("rep-a", ports=[1, 2, 3, 4, 5, 6])
    shed_b, auth_b = await api.register_shed("rep-b", ports=[1, 2, 3, 4])
    month_a, month_b = simulated_month(1, 6), simulated_month(2, 4)
    for shed_id, auth, sessions in ((shed_a, auth_a, month_a), (shed_b, auth_b, month_b)):
        # open first, then closed: only the closing version counts
        opened = [
            record(
                "session", s["id"], 1, s["started_ms"], {**s, "ended_ms": None, "end_reason": None}
            )
            for s in sessions
        ]
        closed = [record("session", s["id"], 2, s["ended_ms"], s) for s in sessions]
        await uplink(api, shed_id, auth, opened + closed)
        await uplink(api, shed_id, auth, closed)  # replayed: duplicates
    # a shed of another compound must not leak into demo's report
    other, other_auth = await api.register_shed("rep-other", compound_id="other", ports=[1])
    await uplink(
        api,
        other,
        other_auth,
        [
            record("session", s["id"], 2, s["ended_ms"], {**s, "port": 1})
            for s in simulated_month(3, 1)
        ],
    )

    expected = expected_month(month_a + month_b, sockets=10)
    period = parse_period("month", "2026-11")
    with api.app.state.ctx.sessions() as db:
        report = queries.report(db, "demo", period)
        baseline = raw_report(db, "demo", period)
    check_report(report, expected)
    assert report.tables == baseline.tables
    sheds = {row[0]: row for row in report.table("sheds").rows}
    assert sheds.keys() == {"rep-a", "rep-b"}
    assert sheds["rep-a"][3] == expected_month(month_a, sockets=6)["sessions"]


async def test_a_corrected_session_replaces_what_it_added(api: Api) -> None:
    shed_id, auth = await api.register_shed("fix-a", ports=[1, 2])
    start = local_ms("2026-11-10T21:00")
    first = session_data("fx1", 1, start, 120, "unplugged", 400, 120, 380)
    fixed = session_data("fx1", 2, start + HOUR, 60, "full", 500, 150, 350)
    await uplink(api, shed_id, auth, [record("session", "fx1", 3, start, first)])
    await uplink(api, shed_id, auth, [record("session", "fx1", 3, start, first)])  # a replay
    await uplink(api, shed_id, auth, [record("session", "fx1", 4, start, fixed)])
    period = parse_period("day", "2026-11-10")
    with api.app.state.ctx.sessions() as db:
        summary = queries.report(db, "demo", period).summary()
        rows = db.execute(
            select(ReportSocketDay.port, ReportSocketDay.sessions, ReportSocketDay.in_use_ms)
        ).all()
        assert db.scalar(select(func.count()).select_from(ReportContribution)) == 1
    assert summary["sessions"] == 1
    assert summary["energy_kwh"] == 0.5
    assert summary["revenue_yuan"] == 1.5
    assert summary["refunds_yuan"] == 3.5
    assert sorted(rows) == [(1, 0, 0), (2, 1, HOUR)]  # moved to socket 2, emptied on 1


async def test_safety_alarms_count_once_as_incidents(api: Api) -> None:
    shed_id, auth = await api.register_shed("inc-a", ports=[1, 2])
    raised = local_ms("2026-11-12T14:30")

    def alarm(aid: str, kind: str, port: int | None, version: int) -> dict[str, Any]:
        data = {"id": aid, "kind": kind, "raised_ms": raised, "port": port, "active": version == 1}
        return record("alarm", aid, version, raised + version, data)

    await uplink(
        api,
        shed_id,
        auth,
        [
            alarm("a1", "overtemp", 2, 1),
            alarm("a1", "overtemp", 2, 2),  # raised, then cleared
            alarm("a2", "smoke", None, 1),
            alarm("a3", "board_offline", None, 1),  # not a safety incident
        ],
    )
    await uplink(api, shed_id, auth, [alarm("a1", "overtemp", 2, 1)])  # a replay
    with api.app.state.ctx.sessions() as db:
        report = queries.report(db, "demo", parse_period("week", "2026-W46"))
    assert report.summary()["incidents"] == 2
    incidents = {(row[0], row[1]): row[8] for row in report.table("sockets").rows}
    assert incidents[("inc-a", 2)] == 1
    assert incidents[("inc-a", 0)] == 1  # the smoke alarm: the shed as a whole


async def test_reports_of_an_unknown_compound_are_refused(api: Api) -> None:
    with api.app.state.ctx.sessions() as db, pytest.raises(queries.UnknownCompound):
        queries.report(db, "nowhere", parse_period("month", "2026-11"))


def nonzero_rows(db: Any, model: Any) -> set[tuple[Any, ...]]:
    rows = set()
    for row in db.scalars(select(model)):
        values = tuple(getattr(row, c.name) for c in model.__table__.columns)
        if any(
            v
            for c, v in zip(model.__table__.columns, values, strict=True)
            if c.name not in ("shed_id", "port", "day_ms", "hour_ms", "compound_id")
        ):
            rows.add(values)
    return rows


async def test_a_rebuild_gives_the_rollups_kept_record_by_record(api: Api) -> None:
    from api.models import ReportShedHour
    from api.reports.rollups import rebuild

    shed_id, auth = await api.register_shed("reb-a", ports=[1, 2, 3])
    sessions = simulated_month(7, 3)
    t = local_ms("2026-11-08T19:00")
    await uplink(
        api,
        shed_id,
        auth,
        [
            *(record("session", s["id"], 2, s["ended_ms"], s) for s in sessions),
            record("session", sessions[3]["id"], 3, t, {**sessions[3], "end_reason": "smoke"}),
            record(
                "alarm",
                "al-1",
                1,
                t,
                {"id": "al-1", "kind": "smoke", "raised_ms": t, "active": True},
            ),
            record("socket", "1", 1, t, {"port": 1, "state": "charging", "since": t}),
            record("socket", "2", 1, t, {"port": 2, "state": "charging", "since": t}),
            record("socket", "3", 1, t, {"port": 3, "state": "fault", "since": t}),
            record(
                "demand",
                "card-1",
                1,
                t,
                {"source": "card", "port": 1, "reason": "charging", "card": "A1B2", "at_ms": t},
            ),
        ],
    )
    with api.app.state.ctx.sessions() as db:
        kept = (nonzero_rows(db, ReportSocketDay), nonzero_rows(db, ReportShedHour))
        report = queries.report(db, "demo", parse_period("month", "2026-11"))
    assert report.summary()["incidents"] == 1 and report.summary()["unserved"] == 1
    with api.app.state.ctx.sessions.begin() as db:
        assert rebuild(db, "demo", api.clock.now) == len(sessions)
    with api.app.state.ctx.sessions() as db:
        assert (nonzero_rows(db, ReportSocketDay), nonzero_rows(db, ReportShedHour)) == kept
        assert queries.report(db, "demo", parse_period("month", "2026-11")).tables == report.tables
