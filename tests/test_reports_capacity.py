"""Capacity planning: the replay by hand, a year of one shed timed, and over HTTP
on SQLite and PostgreSQL (JSON, CSV, the XLSX sheet, access, bad input)."""

from __future__ import annotations

import csv
import io
import random
import time
from typing import TYPE_CHECKING, Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import create_engine, insert

from api.models import ChargeSession, DemandEvent
from api.reports.capacity import DEFAULT_CHARGE_MS, MAX_EXTRA, ShedArrivals, replay
from tests.test_reports_rollups import local_ms, record, session_data, uplink

if TYPE_CHECKING:
    from tests.api_db import Api

pytest_plugins = ["tests.api_db"]

HOUR = 3_600_000
MINUTE = 60_000


def pcts(arrivals: ShedArrivals) -> list[float]:
    return [r.served_pct for r in replay(arrivals)]


# ------------------------------------------------------------------ the replay


def test_turned_away_residents_take_the_new_sockets_first_come_first_served() -> None:
    # One recorded 4 h session from 0; four residents turned away at 1 h, 1.5 h,
    # 2 h and 6 h, each charging 4 h (like the session before them).
    shed = ShedArrivals("s", 2, [(0, 4 * HOUR)], [6 * HOUR, HOUR, 2 * HOUR, HOUR + HOUR // 2])
    rows = replay(shed)
    assert [r.extra for r in rows] == list(range(1, MAX_EXTRA + 1))
    assert {(r.shed_id, r.sockets, r.turned_away) for r in rows} == {("s", 2, 4)}
    # +1: 1 h (busy to 5 h), then 6 h; +2: 1 h and 1.5 h, then 6 h; +3: everyone.
    assert [r.served for r in rows[:4]] == [2, 3, 4, 4]
    assert pcts(shed)[:3] == [50.0, 75.0, 100.0]
    assert set(pcts(shed)[2:]) == {100.0}


def test_how_long_a_newcomer_charges() -> None:
    # Before any session: the median of the period's sessions (here 1 h); after
    # one: that session's length (here 10 h, so the second newcomer waits).
    sessions = [(5 * HOUR, 15 * HOUR), (20 * HOUR, 21 * HOUR), (22 * HOUR, 23 * HOUR)]
    early = ShedArrivals("s", 4, sessions, [0, 30 * MINUTE, 90 * MINUTE])
    assert [r.served for r in replay(early, 2)] == [2, 3]  # 0-1 h, then 1.5 h
    late = ShedArrivals("s", 4, sessions, [6 * HOUR, 7 * HOUR])
    assert [r.served for r in replay(late, 2)] == [1, 2]
    # No session at all: DEFAULT_CHARGE_MS.
    bare = ShedArrivals("s", 4, [], [0, DEFAULT_CHARGE_MS - 1, DEFAULT_CHARGE_MS])
    assert [r.served for r in replay(bare, 1)] == [2]
    # Nobody turned away: nothing to serve, 0 %.
    assert pcts(ShedArrivals("s", 4, sessions, []))[:2] == [0.0, 0.0]
    with pytest.raises(ValueError, match="max_extra"):
        replay(early, 0)


def year_of_one_shed(sockets: int, seed: int) -> ShedArrivals:
    """A busy shed: every evening the sockets fill and more residents come than fit."""
    rng = random.Random(seed)
    start = local_ms("2026-01-01T00:00")
    sessions: list[tuple[int, int]] = []
    turned: list[int] = []
    for day in range(365):
        base = start + day * 24 * HOUR
        for _ in range(sockets):  # each socket: an evening session and a day one
            t = base + int(rng.uniform(17, 22) * HOUR)
            sessions.append((t, t + int(rng.uniform(3, 9) * HOUR)))
            t = base + int(rng.uniform(7, 14) * HOUR)
            sessions.append((t, t + int(rng.uniform(1, 5) * HOUR)))
        for _ in range(rng.randint(10, 60)):
            turned.append(base + int(rng.uniform(18, 23) * HOUR))
    return ShedArrivals("busy", sockets, sessions, turned)


def test_a_year_of_one_shed_replays_fast_and_more_sockets_serve_more() -> None:
    shed = year_of_one_shed(24, seed=14)
    started = time.perf_counter()
    rows = replay(shed)
    elapsed = time.perf_counter() - started
    served = [r.served for r in rows]
    print(
        f"\ncapacity replay: a year of one 24-socket shed ({len(shed.sessions)} sessions, "
        f"{len(shed.turned_away)} turned away), N = 1..{MAX_EXTRA}, in {elapsed:.3f} s; "
        f"served {rows[0].served_pct} % with +1, {rows[-1].served_pct} % with +{MAX_EXTRA}"
    )
    assert served == sorted(served)  # never fewer with more sockets
    assert 0 < served[0] < served[-1] <= len(shed.turned_away)


# ------------------------------------------------------------------ over HTTP


async def planned_shed(api: Api, shed_id: str = "cap-1", compound: str = "demo") -> None:
    """The hand-worked case above, in November, through the real uplink."""
    shed_id, auth = await api.register_shed(shed_id, compound_id=compound, ports=[1, 2])
    t0 = local_ms("2026-11-10T17:00")
    session = session_data("c1", 1, t0, 240, "full", 900, 100, 400)
    turned = [t0 + 6 * HOUR, t0 + HOUR, t0 + 2 * HOUR, t0 + HOUR + HOUR // 2]

    def card_refused(i: int, at: int) -> dict[str, Any]:
        data = {"source": "card", "port": 2, "reason": "over_budget", "card": f"C{i:07X}"}
        return record("demand", f"d-{i}", 1, at, data | {"at_ms": at})

    demand = [card_refused(i, at) for i, at in enumerate(turned)]
    await uplink(api, shed_id, auth, [record("session", "c1", 2, t0 + 240 * MINUTE, session)])
    await uplink(api, shed_id, auth, demand)


MONTH = {"period": "month", "value": "2026-11"}


async def test_capacity_over_http(api: Api) -> None:
    await planned_shed(api)
    await planned_shed(api, "cap-other", compound="other")
    office = await api.user("office", "demo")
    response = await api.client.get("/api/v1/reports/demo/capacity", params=MONTH, headers=office)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["period"]["label"] == "2026-11"
    rows = [dict(zip(body["columns"], r, strict=True)) for r in body["rows"]]
    assert [r["extra_sockets"] for r in rows] == list(range(1, MAX_EXTRA + 1))
    assert {(r["shed"], r["socket_count"], r["turned_away"]) for r in rows} == {("cap-1", 2, 4)}
    assert [r["served_pct"] for r in rows[:3]] == [50.0, 75.0, 100.0]
    # Another month: nothing recorded, nobody to serve.
    october = await api.client.get(
        "/api/v1/reports/demo/capacity", params={"period": "month", "value": "2026-10"},
        headers=office,
    )  # fmt: skip
    assert {r[3] for r in october.json()["rows"]} == {0}

    # The XLSX gets a sheet of it, the CSV the table.
    xlsx = await api.client.get(
        "/api/v1/reports/demo/export", params=MONTH | {"format": "xlsx", "lang": "en"},
        headers=office,
    )  # fmt: skip
    assert xlsx.status_code == 200, xlsx.text
    book = load_workbook(io.BytesIO(xlsx.content))
    sheet = book["Capacity planning"]
    values = list(sheet.values)
    assert values[0] == ("Shed", "Sockets", "More sockets", "Turned away", "Would be served",
                         "Served (%)")  # fmt: skip
    assert [list(v) for v in values[1:]] == body["rows"]
    assert "Summary" in book.sheetnames  # the report's own sheets are still there
    got = await api.client.get(
        "/api/v1/reports/demo/export", params=MONTH | {"format": "csv", "table": "capacity"},
        headers=office,
    )  # fmt: skip
    assert got.status_code == 200, got.text
    table = list(csv.reader(io.StringIO(got.content.decode("utf-8-sig"))))
    assert table[0][2] == "增加插座数" and len(table) == MAX_EXTRA + 1
    assert [float(r[5]) for r in table[1:4]] == [50.0, 75.0, 100.0]

    # Access as for the report; bad input answers a problem.
    other_office = await api.user("office", "other")
    denied = await api.client.get(
        "/api/v1/reports/demo/capacity", params=MONTH, headers=other_office
    )
    assert denied.status_code == 403 and denied.json()["code"] == "not_your_compound"
    assert (await api.client.get("/api/v1/reports/demo/capacity", params=MONTH)).status_code == 401
    bad = await api.client.get(
        "/api/v1/reports/demo/capacity", params={"period": "month", "value": "2026-13"},
        headers=office,
    )  # fmt: skip
    assert bad.status_code == 422
    missing = await api.client.get("/api/v1/reports/nowhere/capacity", params=MONTH,
                                   headers=api.admin)  # fmt: skip
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_compound"


async def test_a_year_of_one_shed_through_the_database(api: Api, db_url: str) -> None:
    """The year above, stored as the uplink stores it, read and replayed over HTTP."""
    shed_id, _ = await api.register_shed("year-1", ports=list(range(1, 25)))
    shed = year_of_one_shed(24, seed=14)
    sessions: list[dict[str, Any]] = [
        {
            "shed_id": shed_id, "id": f"y{i}", "port": i % 24 + 1, "auth_kind": "order",
            "auth_ref": f"EBSy{i}", "auth_mode": "until_full", "prepaid_fen": 400,
            "order_no": None, "tariff_id": None, "tariff_version": None, "tariff": None,
            "started_ms": start, "stop_ms": end, "ended_ms": end, "end_reason": "full",
            "first_wh": 0, "last_wh": 500, "energy_wh": 500, "peak_w": 200.0,
            "billed_fen": 100, "refund_fen": 300, "flags": [], "bill": None, "data": {},
            "version": 2, "reported_ms": end, "received_ms": end, "closed_received_ms": end,
        }
        for i, (start, end) in enumerate(shed.sessions)
    ]  # fmt: skip
    demand: list[dict[str, Any]] = [
        {"shed_id": shed_id, "port": None, "source": "card", "visitor": f"v{i}", "at_ms": at,
         "received_ms": at}
        for i, at in enumerate(shed.turned_away)
    ]  # fmt: skip
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(ChargeSession), sessions)
            conn.execute(insert(DemandEvent), demand)
    finally:
        engine.dispose()
    year = {"period": "year", "value": "2026"}
    started = time.perf_counter()
    response = await api.client.get("/api/v1/reports/demo/capacity", params=year, headers=api.admin)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    rows = [r for r in response.json()["rows"] if r[0] == shed_id]
    backend = db_url.split(":", 1)[0]
    print(f"\ncapacity over HTTP ({backend}): a year of one 24-socket shed in {elapsed:.2f} s")
    assert [r[4] for r in rows] == [r.served for r in replay(shed)]
