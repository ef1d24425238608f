"""The capacity planning chart on the report page, in a real headless Chromium.

The API runs under uvicorn (create_app with its lifespan); the hand-worked
shed of tests/test_reports_capacity.py arrives through the real uplink; the
office user logs in on the real `/login` page and reads the chart, its bars'
values and the table, in Chinese and in English.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from api.reports.capacity import MAX_EXTRA
from tests.browser import TIMEOUT_MS, screenshots_dir
from tests.test_reports_capacity import planned_shed

if TYPE_CHECKING:
    from tests.api_db import Api

pytest_plugins = ["tests.api_db", "tests.browser"]
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the page, not SQL


@pytest.fixture
async def served(db_url: str) -> AsyncIterator[Api]:
    from tests.api_db import serve_api  # after pytest rewrote it

    async with serve_api(db_url) as api:  # 2026-11-21: "this month" is November
        await planned_shed(api)
        await api.register_shed("quiet-2", ports=[1, 2, 3])  # nobody turned away there
        yield api


async def test_office_user_reads_the_capacity_chart(served: Api, browser: Any) -> None:
    from tests.api_db import USER_PASSWORD

    await served.user("office", "demo", login="office-demo")
    origin = str(served.client.base_url).rstrip("/")
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    await page.goto(f"{origin}/reports/demo?period=month&value=2026-11")
    await page.wait_for_url("**/login?next=*")
    await page.fill("input[name=login]", "office-demo")
    await page.fill("input[name=password]", USER_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/reports/demo*")

    section = page.locator("#capacity")
    assert "扩容测算" in await section.locator("h2").inner_text()
    chart = page.locator("#capacity-cap-1 svg.chart")
    assert await chart.count() == 1
    assert await page.locator("#capacity-quiet-2").count() == 0  # no chart without demand
    bars = await chart.locator("rect > title").all_text_contents()
    assert len(bars) == MAX_EXTRA
    assert bars[:4] == ["+1: 50%", "+2: 75%", "+3: 100%", "+4: 100%"]
    assert "cap-1" in await page.inner_text("#capacity-cap-1 figcaption")
    # The table: every shed, N = 1..20, the same figures as the bars.
    rows = page.locator("#table-capacity tbody tr")
    assert await rows.count() == 2 * MAX_EXTRA
    first = await rows.nth(0).locator("td").all_inner_texts()
    assert first == ["cap-1", "2", "1", "4", "2", "50.0"]
    await chart.scroll_into_view_if_needed()
    await page.screenshot(path=str(screenshots_dir() / "reports-capacity.png"), full_page=False)

    await page.goto(f"{origin}/reports/demo?period=month&value=2026-11&lang=en")
    assert "Capacity planning" in await page.inner_text("#capacity h2")
    caption = await page.inner_text("#capacity-cap-1 figcaption")
    assert caption == "cap-1: turned-away residents served with N more sockets (%)"
    header = await page.locator("#table-capacity thead th").all_inner_texts()
    assert header == ["Shed", "Sockets", "More sockets", "Turned away", "Would be served",
                      "Served (%)"]  # fmt: skip
    assert errors == []
    await context.close()
