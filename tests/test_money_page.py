"""The shed's public money page (docs/money-page.md) over HTTP, on SQLite and
PostgreSQL: its figures equal the office reports' month by month, electricity
bought from the main meter where the office entered one (losses shown), the
office's settings and expense lines audited, bad input refused with nothing
changed, nothing on it that names a resident, and the PDF of a month."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from api.models import AuditEntry, MoneySettings
from api.reports.district import district_report
from api.reports.model import kwh, yuan
from api.reports.money_pdf import lines
from api.reports.periods import parse_period
from api.services.money_page import electricity_fen
from api.web.money_page import page_of
from tests.test_reports_rollups import local_ms, record, session_data, uplink

if TYPE_CHECKING:
    from tests.api_db import Api

pytest_plugins = ["tests.api_db"]

PRICE = 62  # fen per kWh


async def two_sheds_two_months(api: Api) -> None:
    east, east_auth = await api.register_shed("east-1", ports=[1, 2, 3])
    west, west_auth = await api.register_shed("west-2", ports=[1, 2])
    east_sessions = [
        session_data("zqxe1", 1, local_ms("2026-10-12T19:10"), 300, "full", 950, 210, 290),
        session_data("zqxe2", 2, local_ms("2026-11-03T20:05"), 95, "unplugged", 310, 100, 400),
        session_data("zqxe3", 3, local_ms("2026-11-17T12:30"), 40, "money_used_up", 120, 50, 0),
    ]
    west_sessions = [
        session_data("zqxw1", 1, local_ms("2026-11-08T21:00"), 480, "full", 1333, 333, 167),
        session_data("zqxw2", 2, local_ms("2026-11-30T23:50"), 120, "overtemp", 207, 80, 420),
    ]
    for shed_id, auth, sessions in (
        (east, east_auth, east_sessions),
        (west, west_auth, west_sessions),
    ):
        await uplink(
            api, shed_id, auth, [record("session", s["id"], 2, s["ended_ms"], s) for s in sessions]
        )


def month_of(data: dict[str, Any], label: str) -> dict[str, Any]:
    return next(m for m in data["months"] if m["month"] == label)


async def test_the_page_equals_the_reports_month_by_month(api: Api) -> None:
    await two_sheds_two_months(api)
    office = await api.user("office", "demo")
    put = await api.client.put(
        "/api/v1/money/demo/settings",
        json={"grid_fen_per_kwh": PRICE, "margin_for": "维修基金 maintenance fund"},
        headers=office,
    )
    assert put.status_code == 200, put.text
    meter = await api.client.put(
        "/api/v1/money/demo/meters/west-2/2026-11", json={"energy_wh": 1640}, headers=office
    )
    assert meter.status_code == 200, meter.text
    expense = await api.client.post(
        "/api/v1/money/demo/expenses",
        json={"month": "2026-11", "amount_fen": 150, "note": "更换 3 号插座保险丝"},
        headers=office,
    )
    assert expense.status_code == 201, expense.text

    response = await api.client.get("/api/v1/money/demo")  # no login
    assert response.status_code == 200, response.text
    data = response.json()
    assert [m["month"] for m in data["months"]][-2:] == ["2026-10", "2026-11"]
    assert len(data["months"]) == 12
    assert data["grid_fen_per_kwh"] == PRICE
    with api.app.state.ctx.sessions() as db, db.begin():
        district = district_report(
            db, parse_period("month", "2026-01").start_ms, parse_period("month", "2026-11").end_ms
        )
    for label in ("2026-09", "2026-10", "2026-11"):
        shown = month_of(data, label)
        report = await api.client.get(
            "/api/v1/reports/demo", params={"period": "month", "value": label}, headers=office
        )
        summary = report.json()["summary"]
        assert shown["sessions"] == summary["sessions"]
        assert kwh(shown["energy_wh"]) == summary["energy_kwh"]
        assert yuan(shown["billed_fen"]) == summary["revenue_yuan"]
        assert yuan(shown["refund_fen"]) == summary["refunds_yuan"]
        month_ms = parse_period("month", label).start_ms
        rows = [c for (_, m), c in district.totals.items() if m == month_ms]
        assert shown["billed_fen"] == sum(c["billed_fen"] for c in rows)
        assert shown["energy_wh"] == sum(c["energy_wh"] for c in rows)

    october, november = month_of(data, "2026-10"), month_of(data, "2026-11")
    assert (october["sessions"], october["energy_wh"], october["billed_fen"]) == (1, 950, 210)
    assert october["metered_wh"] is None and october["losses_wh"] is None
    assert october["bought_wh"] == 950
    assert october["electricity_fen"] == electricity_fen(950, PRICE) == 59  # 58.9 rounds up
    assert october["margin_fen"] == 210 - 59
    # November: east by its sockets (430 Wh), west by its main meter (1640 for 1540 delivered).
    assert november["energy_wh"] == 310 + 120 + 1333 + 207
    assert november["metered_wh"] == 1640
    assert november["losses_wh"] == 1640 - (1333 + 207)
    assert november["bought_wh"] == 430 + 1640
    assert november["electricity_fen"] == (2070 * PRICE + 500) // 1000
    assert november["expenses_fen"] == 150
    assert november["expenses"] == [{"amount_fen": 150, "note": "更换 3 号插座保险丝"}]
    assert november["margin_fen"] == 100 + 50 + 333 + 80 - november["electricity_fen"] - 150
    assert month_of(data, "2026-09")["sessions"] == 0

    # The same figures on the page (as residents read them) and in the PDF.
    html = (await api.client.get("/money/demo")).text
    section = html[html.index('id="month-2026-11"') :]
    assert f"{yuan(november['margin_fen']):.2f} 元" in section.split("</section>")[0]
    pdf = await api.client.get("/money/demo/month/2026-11.pdf")
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    assert len(re.findall(rb"/Type /Page\b", pdf.content)) == 1
    drawn = dict(lines(page_of(data), page_of(data).months[-1]))
    assert drawn["结余 Left (margin)"] == f"{yuan(november['margin_fen']):.2f} 元"
    assert drawn["线损 Losses"] == "0.100 kWh"


async def test_the_office_sets_it_audited_and_no_one_else(api: Api) -> None:
    await two_sheds_two_months(api)
    await api.register_shed("far-1", compound_id="other")
    office = await api.user("office", "demo")
    staff = await api.user("staff", "demo")
    other_office = await api.user("office", "other")
    resident = await api.user(None)
    body = {"grid_fen_per_kwh": PRICE, "margin_for": "运营费"}
    assert (await api.client.put("/api/v1/money/demo/settings", json=body)).status_code == 401
    for headers in (staff, other_office, resident):
        refused = await api.client.put("/api/v1/money/demo/settings", json=body, headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "not_your_compound"
    for bad in ({"grid_fen_per_kwh": 0}, {"grid_fen_per_kwh": 65.5}, {"grid_fen_per_kwh": 5000}):
        refused = await api.client.put("/api/v1/money/demo/settings", json=bad, headers=office)
        assert refused.status_code == 422, refused.text
    no_note = await api.client.post(
        "/api/v1/money/demo/expenses",
        json={"month": "2026-11", "amount_fen": 100, "note": ""},
        headers=office,
    )
    assert no_note.status_code == 422
    bad_month = await api.client.post(
        "/api/v1/money/demo/expenses",
        json={"month": "2026-13", "amount_fen": 100, "note": "x"},
        headers=office,
    )
    assert bad_month.status_code == 422
    foreign = await api.client.put(
        "/api/v1/money/demo/meters/far-1/2026-11", json={"energy_wh": 10}, headers=office
    )
    assert foreign.status_code == 404
    assert foreign.json()["code"] == "unknown_shed"
    with api.app.state.ctx.sessions() as db, db.begin():
        assert db.get(MoneySettings, "demo") is None  # nothing changed
        assert not db.scalars(select(AuditEntry).where(AuditEntry.action.like("money%"))).all()

    ok = await api.client.put("/api/v1/money/demo/settings", json=body, headers=office)
    assert ok.status_code == 200
    again = await api.client.put(
        "/api/v1/money/demo/settings", json={"grid_fen_per_kwh": 70}, headers=api.admin
    )
    assert again.status_code == 200
    added = await api.client.post(
        "/api/v1/money/demo/expenses",
        json={"month": "2026-11", "amount_fen": 4000, "note": "insurance"},
        headers=office,
    )
    assert added.status_code == 201
    with api.app.state.ctx.sessions() as db, db.begin():
        entries = db.scalars(
            select(AuditEntry).where(AuditEntry.action.like("money%")).order_by(AuditEntry.id)
        ).all()
    assert [(e.action, e.compound_id) for e in entries] == [
        ("money_settings", "demo"),
        ("money_settings", "demo"),
        ("money_expense", "demo"),
    ]
    assert entries[1].data["before"] == {"grid_fen_per_kwh": PRICE, "margin_for": "运营费"}
    assert entries[1].actor == "admin-token"
    assert entries[2].note == "insurance"
    assert entries[2].data == {"month": "2026-11", "amount_fen": 4000}


async def test_nothing_on_it_names_a_resident(api: Api) -> None:
    await two_sheds_two_months(api)
    shed = await api.client.get("/money/shed/east-1", follow_redirects=False)
    assert shed.status_code == 303
    assert shed.headers["location"] == "/money/demo"
    assert (await api.client.get("/money/shed/nowhere")).status_code == 404
    assert (await api.client.get("/money/nowhere")).status_code == 404
    assert (await api.client.get("/api/v1/money/nowhere")).status_code == 404
    page = (await api.client.get("/money/demo")).text
    data = (await api.client.get("/api/v1/money/demo")).text
    pdf = (await api.client.get("/money/demo/month/2026-11.pdf")).content
    for text in (page, data, pdf.decode("latin-1")):
        for private in ("EBSzqx", "zqx"):  # order refs, session ids
            assert private not in text, private
    months = (await api.client.get("/api/v1/money/demo")).json()["months"]
    assert set(months[0]) == {
        "month", "sessions", "energy_wh", "billed_fen", "refund_fen", "metered_wh", "bought_wh",
        "losses_wh", "electricity_fen", "expenses_fen", "margin_fen", "expenses",
    }  # fmt: skip
    shed_page = (await api.client.get("/s/east-1")).text
    assert 'href="/money/shed/east-1"' in shed_page
