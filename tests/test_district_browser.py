"""The district view in real headless Chromium: an admin of two compounds
logs in and sees one row per compound (sheds online, sockets by state,
alarms open, sessions, energy and revenue today, unserved demand), equal to
the staff board's JSON and the day's office report, and follows a link down
to a shed's board. Staff without the admin role are refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from api.reports.model import kwh
from api.web.money import money
from tests.browser import TIMEOUT_MS
from tests.test_reports_rollups import record, session_data, uplink
from tests.test_staff_board import Shed, port

if TYPE_CHECKING:
    from tests.api_db import Api

pytest_plugins = ["tests.api_db", "tests.browser"]
pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
async def served(db_url: str) -> AsyncIterator[Api]:
    from tests.api_db import serve_api  # after pytest rewrote it

    async with serve_api(db_url) as api:
        yield api


async def a_shed(api: Api, shed_id: str, compound: str, states: list[str]) -> Shed:
    sid, headers = await api.register_shed(
        shed_id, compound_id=compound, ports=list(range(1, len(states) + 1))
    )
    shed = Shed(api, sid, headers)
    await shed.live([port(i + 1, s) for i, s in enumerate(states)])
    return shed


async def test_an_admin_sees_every_compound_on_one_page(served: Api, browser: Any) -> None:
    from tests.api_db import USER_PASSWORD

    api = served
    now = api.clock.now
    east = await a_shed(api, "east-1", "demo", ["charging", "charging", "idle", "fault"])
    await a_shed(api, "west-2", "demo", ["idle", "floating"])
    far = await a_shed(api, "far-1", "other", ["charging", "offline"])
    await east.record("alarm", "a1", {"id": "a1", "kind": "overtemp", "raised_ms": now,
                                      "active": True, "detail": "71 °C", "port": 4})  # fmt: skip
    sessions = [
        session_data("d1", 1, now - 3_600_000, 30, "full", 800, 150, 50),
        session_data("d2", 2, now - 7_200_000, 60, "unplugged", 420, 90, 10),
    ]
    await uplink(api, east.id, east.headers,
                 [record("session", s["id"], 2, s["ended_ms"], s) for s in sessions])  # fmt: skip
    await uplink(api, far.id, far.headers, [record("session", "f1", 2, now - 60_000,
                 session_data("f1", 1, now - 1_860_000, 30, "full", 333, 70, 0))])  # fmt: skip
    await api.user("admin", None, login="li", grants=[("admin", "demo"), ("admin", "other")])
    await api.user("staff", "demo", login="zhang")
    admin = await api.user("admin", None, grants=[("admin", "demo"), ("admin", "other")])
    board = (await api.client.get("/api/v1/staff/board", headers=admin)).json()
    day = {"period": "day"}
    reports = {
        c: (await api.client.get(f"/api/v1/reports/{c}", params=day, headers=admin)).json()
        for c in ("demo", "other")
    }

    origin = str(api.client.base_url)
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    await page.goto(f"{origin}/login?next=%2Fboard%2Fdistrict")
    await page.fill("input[name=login]", "li")
    await page.fill("input[name=password]", USER_PASSWORD)
    await page.click("#login-form button")
    await page.wait_for_url(f"{origin}/board/district")
    for compound in ("demo", "other"):
        row = page.locator(f"#compound-{compound}")
        sheds = [s for s in board["sheds"] if s["compound_id"] == compound]
        online = sum(1 for s in sheds if s["online"])
        summary = reports[compound]["summary"]

        async def figure(name: str, row: Any = row) -> str:
            return str(await row.locator(f'td[data-figure="{name}"]').inner_text())

        assert await figure("online") == f"{online} / {len(sheds)}"
        assert await figure("alarms") == str(sum(s["active_alarms"] for s in sheds))
        assert await figure("sessions") == str(summary["sessions"])
        assert await figure("energy") == f"{summary['energy_kwh']:.3f} kWh"
        revenue = round(summary["revenue_yuan"] * 100)
        assert await figure("revenue") == money(revenue, "zh")
        assert await figure("unserved") == str(summary["unserved"])
        states: dict[str, int] = {}
        for s in sheds:
            for code, n in s["states"].items():
                states[code] = states.get(code, 0) + n
        shown = await row.locator("span[data-state]").evaluate_all(
            "els => els.map(e => [e.dataset.state, e.textContent.trim()])"
        )
        assert {code: int(text.split()[-1]) for code, text in shown} == states
    assert await page.locator('#compound-demo td[data-figure="alarms"]').inner_text() == "1"
    assert await page.locator('#compound-demo td[data-figure="energy"]').inner_text() == (
        f"{kwh(1220):.3f} kWh"
    )
    total = page.locator("#district-total")
    assert await total.locator('td[data-figure="sessions"]').inner_text() == "3"
    await page.click('a[data-shed="far-1"]')
    await page.wait_for_url(f"{origin}/board?shed=far-1")
    assert errors == []

    await context.clear_cookies()
    await page.goto(f"{origin}/login?next=%2Fboard%2Fdistrict")
    await page.fill("input[name=login]", "zhang")
    await page.fill("input[name=password]", USER_PASSWORD)
    await page.click("#login-form button")
    await page.wait_for_url(f"{origin}/board/district")
    answer = await page.request.get(f"{origin}/board/district")
    assert answer.status == 403
    assert await page.locator("#district").count() == 0
