"""Reports over HTTP: who may read them, downloads that agree with the JSON,
problem responses for bad input, the page, and unserved demand from QR scans
and refused card taps."""

from __future__ import annotations

import csv
import io
import re
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from api.models import DemandEvent
from api.services.sms_login import COOKIE_NAME
from api.web.reports_demand import VISITOR_COOKIE
from tests.test_reports_rollups import local_ms, record, session_data, uplink

if TYPE_CHECKING:
    from tests.api_db import Api

pytest_plugins = ["tests.api_db"]

MONTH = {"period": "month", "value": "2026-11"}


def browse_as(api: Api, headers: dict[str, str]) -> None:
    """Hold the login cookie as a browser would (the pages read the cookie, not headers)."""
    api.client.cookies.clear()
    api.client.cookies.set(COOKIE_NAME, headers["Authorization"].removeprefix("Bearer "))


async def shed_with_sessions(api: Api, shed_id: str = "rep-s", compound: str = "demo") -> None:
    shed_id, auth = await api.register_shed(shed_id, compound_id=compound, ports=[1, 2, 3])
    sessions = [
        session_data("q1", 1, local_ms("2026-11-03T19:10"), 300, "full", 950, 200, 300),
        session_data("q2", 2, local_ms("2026-11-03T20:05"), 95, "unplugged", 310, 100, 400),
        session_data("q3", 3, local_ms("2026-11-17T12:30"), 40, "money_used_up", 120, 50, 0),
        session_data("q4", 1, local_ms("2026-11-30T23:00"), 120, "overtemp", 200, 80, 420),
    ]
    await uplink(
        api, shed_id, auth, [record("session", s["id"], 2, s["ended_ms"], s) for s in sessions]
    )


# ------------------------------------------------------------------ access


async def test_office_users_read_their_own_compound_only(api: Api) -> None:
    await shed_with_sessions(api)
    await shed_with_sessions(api, "other-s", compound="other")
    office = await api.user("office", "demo")
    staff = await api.user("staff", "demo")
    admin = await api.user("admin", None)
    resident = await api.user(None)
    other_office = await api.user("office", "other")
    for headers in (office, staff, admin, api.admin):
        response = await api.client.get("/api/v1/reports/demo", params=MONTH, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["summary"]["sessions"] == 4
    for headers in (resident, other_office):
        response = await api.client.get("/api/v1/reports/demo", params=MONTH, headers=headers)
        assert response.status_code == 403
        assert response.json()["code"] == "not_your_compound"
        export = await api.client.get("/api/v1/reports/demo/export", params=MONTH, headers=headers)
        assert export.status_code == 403
    anonymous = await api.client.get("/api/v1/reports/demo", params=MONTH)
    assert anonymous.status_code == 401
    listed = await api.client.get("/api/v1/reports", headers=office)
    assert listed.json() == [{"id": "demo", "name": "演示小区"}]
    everything = await api.client.get("/api/v1/reports", headers=admin)
    assert {c["id"] for c in everything.json()} == {"demo", "other"}
    assert (await api.client.get("/api/v1/reports", headers=resident)).status_code == 403


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/api/v1/reports/demo", {"period": "month", "value": "2026-13"}, 422, "bad_period"),
        ("/api/v1/reports/demo", {"period": "week", "value": "2026-11"}, 422, "bad_period"),
        ("/api/v1/reports/demo", {"period": "quarter", "value": "2026"}, 422, "invalid_request"),
        ("/api/v1/reports/demo", {"period": "year", "value": "2026-11"}, 422, "bad_period"),
        ("/api/v1/reports/nowhere", MONTH, 404, "unknown_compound"),
        ("/api/v1/reports/Bad_Id", MONTH, 422, "invalid_request"),
        ("/api/v1/reports/demo/export", {**MONTH, "table": "nope"}, 422, "unknown_table"),
        ("/api/v1/reports/demo/export", {**MONTH, "format": "pdf"}, 422, "invalid_request"),
    ],
)
async def test_bad_requests_are_problems_with_stable_codes(
    api: Api, path: str, params: dict[str, str], status: int, code: str
) -> None:
    await shed_with_sessions(api)
    response = await api.client.get(path, params=params, headers=api.admin)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


# ------------------------------------------------------------------ downloads


def csv_rows(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf")  # the BOM Excel wants
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


async def test_csv_and_xlsx_hold_the_figures_of_the_json(api: Api) -> None:
    await shed_with_sessions(api)
    office = await api.user("office", "demo")
    data = (await api.client.get("/api/v1/reports/demo", params=MONTH, headers=office)).json()
    assert data["summary"] == {
        "sessions": 4,
        "energy_kwh": 1.58,
        "revenue_yuan": 4.3,
        "refunds_yuan": 11.2,
        "avg_session_min": 138.8,
        "utilisation_pct": round(100 * 555 * 60_000 / (3 * 30 * 86_400_000), 1),
        "incidents": 0,
        "unserved": 0,
    }
    days = await api.client.get(
        "/api/v1/reports/demo/export",
        headers=office,
        params={**MONTH, "table": "days", "lang": "en"},
    )
    assert days.headers["content-type"].startswith("text/csv")
    assert 'filename="report-demo-2026-11-days.csv"' in days.headers["content-disposition"]
    header, *rows = csv_rows(days.content)
    assert header[:4] == ["Date", "Sessions", "Energy (kWh)", "Revenue (yuan)"]
    assert len(rows) == 30
    assert sum(int(r[1]) for r in rows) == 4
    assert round(sum(float(r[2]) for r in rows), 3) == 1.58
    assert round(sum(float(r[3]) for r in rows), 2) == 4.3

    everything = csv_rows(
        (await api.client.get("/api/v1/reports/demo/export", params=MONTH, headers=office)).content
    )
    titles = [row[0] for row in everything if len(row) == 1]
    assert titles[1:] == [
        "汇总",
        "每日",
        "按车棚",
        "按插座",
        "结束原因",
        "按小时",
        "高峰时段（开始充电次数）",
    ]

    xlsx = await api.client.get(
        "/api/v1/reports/demo/export", headers=office, params={**MONTH, "format": "xlsx"}
    )
    book = load_workbook(io.BytesIO(xlsx.content), read_only=True)
    assert book.sheetnames == [
        "汇总",
        "每日",
        "按车棚",
        "按插座",
        "结束原因",
        "按小时",
        "高峰时段（开始充电次数）",
        "扩容测算",  # capacity planning (tests/test_reports_capacity.py)
    ]
    summary = {row[0]: row[1] for row in book["汇总"].iter_rows(min_row=2, values_only=True)}
    assert summary["充电次数"] == 4 and summary["收入（元）"] == 4.3
    ends = {row[0]: row[1] for row in book["结束原因"].iter_rows(min_row=2, values_only=True)}
    assert ends == {
        "充满自停": 1,
        "拔下充电器": 1,
        "金额用完": 1,
        "安全保护": 1,
        "居民或物业停止": 0,
        "其他": 0,
    }
    sockets = list(book["按插座"].iter_rows(min_row=2, values_only=True))
    assert [(r[0], r[1], r[2]) for r in sockets] == [
        ("rep-s", 1, 2),
        ("rep-s", 2, 1),
        ("rep-s", 3, 1),
    ]


# ------------------------------------------------------------------ the page


async def test_the_page_shows_figures_charts_and_download_links(api: Api) -> None:
    await shed_with_sessions(api)
    office = await api.user("office", "demo")
    browse_as(api, office)
    page = await api.client.get("/reports/demo", params={**MONTH, "lang": "en"})
    assert page.status_code == 200, page.text
    html = page.text
    assert "演示小区 · Month 2026-11" in html
    assert html.count("<svg") == 6
    assert (
        'href="/api/v1/reports/demo/export?period=month&amp;value=2026-11&amp;lang=en'
        '&amp;format=xlsx"' in html
    )
    assert re.search(r'<span class="figure">4</span><span class="what">Sessions</span>', html)
    prev_next = re.findall(r'<a href="(/reports/demo\?[^"]+)" rel="(?:prev|next)"', html)
    assert prev_next == [
        "/reports/demo?period=month&amp;value=2026-10&amp;lang=en",
        "/reports/demo?period=month&amp;value=2026-12&amp;lang=en",
    ]
    browse_as(api, office)
    index = await api.client.get("/reports")
    assert (index.status_code, index.headers["location"]) == (303, "/reports/demo")


async def test_the_page_sends_strangers_to_login_and_refuses_other_compounds(api: Api) -> None:
    await shed_with_sessions(api)
    anonymous = await api.client.get("/reports/demo", params=MONTH)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == (
        "/login?next=%2Freports%2Fdemo%3Fperiod%3Dmonth%26value%3D2026-11"
    )
    other = await api.user("office", "other")
    browse_as(api, other)
    refused = await api.client.get("/reports/demo", params=MONTH)
    assert refused.status_code == 403
    assert "您无权查看这个小区的报表" in refused.text
    bad = await api.client.get("/reports/demo", params={"period": "month", "value": "11-2026"})
    assert bad.status_code == 403  # access first: nothing said about the compound
    admin = await api.user("admin", None)
    browse_as(api, admin)
    bad = await api.client.get("/reports/demo", params={"period": "month", "value": "11-2026"})
    assert bad.status_code == 422


# ------------------------------------------------------------------ unserved demand


async def full_shed(api: Api, shed_id: str, states: list[str]) -> dict[str, str]:
    shed_id, auth = await api.register_shed(shed_id, ports=list(range(1, len(states) + 1)))
    t = local_ms("2026-11-20T20:00")
    await uplink(
        api,
        shed_id,
        auth,
        [
            record("socket", str(port), 1, t, {"port": port, "state": state, "since": t})
            for port, state in enumerate(states, start=1)
        ],
    )
    return auth


async def demand_count(api: Api) -> int:
    with api.app.state.ctx.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(DemandEvent)) or 0)


async def test_a_qr_scan_of_a_full_shed_is_unserved_demand_once_per_visitor(api: Api) -> None:
    await full_shed(api, "full-1", ["charging", "floating", "fault"])
    api.clock.now = local_ms("2026-11-20T20:30")
    first = await api.client.get("/s/full-1/2?src=qr")
    assert first.status_code == 200, first.text
    cookie = first.cookies.get(VISITOR_COOKIE)
    assert cookie and await demand_count(api) == 1
    again = await api.client.get("/s/full-1/3?src=qr")  # the cookie jar holds the visitor
    assert again.status_code == 200 and await demand_count(api) == 1  # same visitor, 30 min
    api.client.cookies.clear()  # another phone from here on
    await api.client.get("/s/full-1/2")  # not from the sticker: a reload, a link
    assert await demand_count(api) == 1
    await api.client.get("/s/full-1/1?src=qr")
    assert await demand_count(api) == 2
    api.clock.now += 31 * 60_000
    api.client.cookies.clear()
    api.client.cookies.set(VISITOR_COOKIE, cookie)  # the first phone again
    await api.client.get("/s/full-1/1?src=qr")
    assert await demand_count(api) == 3
    admin = await api.user("admin", None)
    report = (
        await api.client.get(
            "/api/v1/reports/demo", headers=admin, params={"period": "day", "value": "2026-11-20"}
        )
    ).json()
    assert report["summary"]["unserved"] == 3
    hours = {row[0]: row[3] for row in report["tables"]["hours"]["rows"] if row[3]}
    assert hours == {20: 2, 21: 1}


async def test_a_scan_that_finds_a_free_socket_is_not_unserved(api: Api) -> None:
    await full_shed(api, "half-1", ["charging", "idle"])
    await api.client.get("/s/half-1/1?src=qr")  # busy socket, but socket 2 is free
    await api.client.get("/s/half-1/2?src=qr")  # the free one
    assert await demand_count(api) == 0


def demand_record(port: int, reason: str, card: str, at: int) -> dict[str, Any]:
    data = {"source": "card", "port": port, "reason": reason, "card": card, "at_ms": at}
    return record("demand", f"card-{port}-{at}", 1, at, data)


async def test_refused_card_taps_count_when_the_shed_is_full(api: Api) -> None:
    auth = await full_shed(api, "card-1", ["charging", "charging"])
    t = local_ms("2026-11-20T21:00")
    await uplink(
        api,
        "card-1",
        auth,
        [
            demand_record(1, "charging", "A1B2C3D4", t),
            demand_record(2, "charging", "A1B2C3D4", t + 60_000),  # same card: once
            demand_record(2, "charging", "0000FFFF", t + 120_000),
            demand_record(1, "unknown_card", "0000EEEE", t + 180_000),  # not about room
        ],
    )
    assert await demand_count(api) == 2
    _, free_auth = await api.register_shed("card-2", ports=[1, 2])
    await uplink(
        api,
        "card-2",
        free_auth,
        [
            record("socket", "1", 1, t, {"port": 1, "state": "charging", "since": t}),
            record("socket", "2", 1, t, {"port": 2, "state": "idle", "since": t}),
            demand_record(1, "charging", "A1B2C3D4", t),  # socket 2 was free
            demand_record(2, "over_budget", "0000AAAA", t),  # the shed at its power limit
        ],
    )
    assert await demand_count(api) == 3


@pytest.mark.parametrize(
    "data",
    [
        {"source": "card", "port": 1, "reason": "charging", "at_ms": 1},  # no card
        {"source": "scan", "port": 1, "reason": "charging", "card": "A1", "at_ms": 1},
        {"source": "card", "port": 0, "reason": "charging", "card": "A1", "at_ms": 1},
        {"source": "card", "port": 1, "reason": "", "card": "A1", "at_ms": 1},
        {"source": "card", "port": "1", "reason": "charging", "card": "A1", "at_ms": 1},
    ],
)
async def test_malformed_demand_records_are_rejected(api: Api, data: dict[str, Any]) -> None:
    shed_id, auth = await api.register_shed("bad-d")
    rec = record("demand", f"d-{uuid.uuid4().hex[:6]}", 1, 1, data)
    response = await api.client.post(
        f"/api/v1/sheds/{shed_id}/uplink", json={"records": [rec]}, headers=auth
    )
    assert response.json()["rejected"][0]["code"] == "bad_record"
    assert await demand_count(api) == 0
