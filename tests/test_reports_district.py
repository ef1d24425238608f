"""The district-wide report (every compound, per shed and per local month):
from the month rollups the uplink keeps, equal to GROUP BY queries over the
raw sessions, alarms and demand events, and to figures computed here with
the standard library's own Asia/Shanghai calendar."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

from api.reports.district import COLUMNS, district_report, months_of, raw_district_report
from api.reports.rollups import rebuild
from tests.test_reports_rollups import SHANGHAI, local_ms, record, simulated_month, uplink

if TYPE_CHECKING:
    from tests.api_db import Api

pytest_plugins = ["tests.api_db"]

OCT = local_ms("2026-10-01T00:00")
JAN = local_ms("2027-01-01T00:00")


def test_months_of_a_range_are_local_months() -> None:
    months = months_of(OCT, JAN)
    assert months == [
        (OCT, local_ms("2026-11-01T00:00")),
        (local_ms("2026-11-01T00:00"), local_ms("2026-12-01T00:00")),
        (local_ms("2026-12-01T00:00"), JAN),
    ]


async def test_the_district_year_from_the_rollups_equals_the_raw_group_by(api: Api) -> None:
    sheds = {"dn-1": "north", "dn-2": "north", "ds-1": "south"}
    started: Counter[tuple[str, str]] = Counter()
    for n, (shed_id, compound) in enumerate(sheds.items()):
        _, auth = await api.register_shed(shed_id, compound_id=compound, ports=[1, 2])
        sessions = simulated_month(20 + n, 2)  # 29 October to 2 December, across month ends
        opened = [record("session", s["id"], 1, s["started_ms"], {**s, "ended_ms": None,
                         "end_reason": None}) for s in sessions]  # fmt: skip
        closed = [record("session", s["id"], 2, s["ended_ms"], s) for s in sessions]
        fixed = {**sessions[0], "energy_wh": sessions[0]["energy_wh"] + 111, "end_reason": "smoke"}
        t = local_ms("2026-11-30T23:30")
        await uplink(api, shed_id, auth, opened)
        await uplink(api, shed_id, auth, [*closed, *opened[:5]])  # with replays
        await uplink(
            api,
            shed_id,
            auth,
            [
                record("session", fixed["id"], 3, t, fixed),  # a correction
                record("alarm", "al-1", 1, t, {"id": "al-1", "kind": "smoke", "raised_ms": t,
                                               "active": True}),
                record("demand", "card-1", 1, t, {"source": "card", "port": 1,
                       "reason": "charging", "card": "A1B2", "at_ms": t}),
            ],
        )  # fmt: skip
        for s in sessions:
            when = datetime.fromtimestamp(s["started_ms"] / 1000, SHANGHAI)
            started[(shed_id, f"{when:%Y-%m}")] += 1

    with api.app.state.ctx.sessions() as db:
        fast = district_report(db, OCT, JAN)
        slow = raw_district_report(db, OCT, JAN)
    assert fast.totals == slow.totals
    assert fast.table.rows == slow.table.rows
    assert fast.table.columns == list(COLUMNS)
    rows = [dict(zip(COLUMNS, row, strict=True)) for row in fast.table.rows]
    assert len(rows) == 3 * 3  # every shed in every month, also the empty ones
    got = {(r["shed"], r["month"]): r["sessions"] for r in rows if r["sessions"]}
    assert got == dict(started)
    nov = {r["shed"]: r for r in rows if r["month"] == "2026-11"}
    assert {r["compound"] for r in nov.values()} == {"north", "south"}
    assert all(r["incidents"] == 1 and r["unserved"] == 1 for r in nov.values())
    assert all(0 < float(r["utilisation_pct"]) <= 100 for r in nov.values())

    with api.app.state.ctx.sessions.begin() as db:  # a rebuild gives the same months
        rebuild(db, "north", 0)
        rebuild(db, "south", 0)
    with api.app.state.ctx.sessions() as db:
        assert district_report(db, OCT, JAN).totals == fast.totals
