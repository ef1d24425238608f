"""An office user in a real headless Chromium: logs in, opens the monthly
report, downloads CSV and XLSX, and the files' totals match the page.

The API runs under uvicorn on a free port (create_app with its lifespan), the
sessions arrive through the real uplink, and the office user logs in on the
real `/login` page. Debian's chromium is driven by Playwright (see
tests/test_web_browser.py). The screenshot of docs/reports.md is made by this
test when docs/screenshots.sh runs it (else to a temporary directory).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from openpyxl import load_workbook

from tests.browser import TIMEOUT_MS, screenshots_dir
from tests.test_reports_rollups import record, simulated_month, uplink

if TYPE_CHECKING:
    from tests.api_db import Api

pytest_plugins = ["tests.api_db", "tests.browser"]
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the page, not SQL


@pytest.fixture
async def served(db_url: str) -> AsyncIterator[Api]:
    """The real app over real HTTP, with a month of sessions in two sheds."""
    from tests.api_db import serve_api  # after pytest rewrote it

    async with serve_api(db_url) as api:  # 2026-11-21: "this month" is November
        for shed_id, ports, seed in (("east-1", 8, 5), ("west-2", 4, 6)):
            shed_id, auth = await api.register_shed(shed_id, ports=list(range(1, ports + 1)))
            sessions = simulated_month(seed, ports)
            await uplink(
                api,
                shed_id,
                auth,
                [record("session", s["id"], 2, s["ended_ms"], s) for s in sessions],
            )
        yield api


def number(text: str) -> float:
    return float(text.strip())


async def test_office_user_reads_the_month_and_downloads_it(
    served: Api, browser: Any, tmp_path: Path
) -> None:
    from tests.api_db import USER_PASSWORD

    await served.user("office", "demo", login="office-demo")
    origin = str(served.client.base_url).rstrip("/")
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="zh-CN", accept_downloads=True
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    # Not logged in: the login page, then straight to this month's report.
    await page.goto(f"{origin}/reports")
    await page.wait_for_url("**/login?next=*")
    await page.fill("input[name=login]", "office-demo")
    await page.fill("input[name=password]", USER_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/reports/demo*")
    assert await page.inner_text("h1") == "演示小区 · 月报 2026-11"
    assert await page.locator("svg.chart").count() == 6

    shown = {
        key: number(await page.inner_text(f"#fig-{key} .figure"))
        for key in ("sessions", "energy_kwh", "revenue_yuan", "refunds_yuan")
    }
    assert shown["sessions"] > 100
    day_rows = page.locator("#table-days tbody tr")
    assert await day_rows.count() == 30
    day_sessions = [
        number(t)
        for t in await page.locator("#table-days tbody tr td:nth-child(2)").all_inner_texts()
    ]
    assert sum(day_sessions) == shown["sessions"]
    await page.screenshot(path=str(screenshots_dir() / "reports-month.png"), full_page=False)

    # The days table as CSV: its columns add up to the page's totals.
    async with page.expect_download() as csv_info:
        await page.click("#table-days h2 a.csv")
    csv_path = tmp_path / "days.csv"
    await (await csv_info.value).save_as(csv_path)
    header, *rows = list(csv.reader(io.StringIO(csv_path.read_text("utf-8-sig"))))
    assert header[:5] == ["日期", "充电次数", "电量（千瓦时）", "收入（元）", "退款（元）"]
    assert len(rows) == 30
    assert sum(int(r[1]) for r in rows) == shown["sessions"]
    assert round(sum(float(r[2]) for r in rows), 3) == shown["energy_kwh"]
    assert round(sum(float(r[3]) for r in rows), 2) == shown["revenue_yuan"]
    assert round(sum(float(r[4]) for r in rows), 2) == shown["refunds_yuan"]

    # Every table as XLSX: the summary sheet says what the page says, and the
    # sheds sheet adds up to it.
    async with page.expect_download() as xlsx_info:
        await page.click("#download-xlsx")
    xlsx_path = tmp_path / "month.xlsx"
    await (await xlsx_info.value).save_as(xlsx_path)
    book = load_workbook(xlsx_path, read_only=True)
    summary = {r[0]: r[1] for r in book["汇总"].iter_rows(min_row=2, values_only=True)}
    assert summary["充电次数"] == shown["sessions"]
    assert summary["电量（千瓦时）"] == shown["energy_kwh"]
    assert summary["收入（元）"] == shown["revenue_yuan"]
    sheds = list(book["按车棚"].iter_rows(min_row=2, values_only=True))
    assert [r[0] for r in sheds] == ["east-1", "west-2"]
    assert sum(r[3] for r in sheds) == shown["sessions"]
    assert round(sum(r[5] for r in sheds), 2) == shown["revenue_yuan"]
    assert errors == []
    await context.close()


async def test_the_report_fits_a_phone_with_readable_axes_and_a_year(
    served: Api, browser: Any
) -> None:
    from tests.api_db import USER_PASSWORD

    await served.user("office", "demo", login="office-phone")
    origin = str(served.client.base_url).rstrip("/")
    context = await browser.new_context(
        viewport={"width": 375, "height": 812}, device_scale_factor=2, is_mobile=True,
        has_touch=True, locale="zh-CN",
    )  # fmt: skip
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    await page.goto(f"{origin}/login?next=/reports/demo")
    await page.fill("input[name=login]", "office-phone")
    await page.fill("input[name=password]", USER_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/reports/demo*")

    width = await page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 375, f"the page is {width} px wide on a 375 px phone"
    for box in await page.locator("svg.chart").evaluate_all(
        "els => els.map(e => e.getBoundingClientRect().right)"
    ):
        assert box <= 375  # no chart cut off
    # The first chart (sessions per day): round ticks on the y axis, text a person reads.
    chart = page.locator("svg.chart").first
    ticks = await chart.evaluate(
        "svg => [...svg.querySelectorAll('text[text-anchor=end]')].map(t => t.textContent)"
    )
    assert len(ticks) >= 3 and ticks[0] == "0", ticks
    steps = {round(float(b) - float(a), 6) for a, b in pairwise(ticks)}
    assert len(steps) == 1, ticks  # evenly spaced
    heights = await chart.evaluate(
        "svg => [...svg.querySelectorAll('text')].map(t => t.getBoundingClientRect().height)"
    )
    assert min(heights) >= 9, f"axis text {min(heights):.1f} px high on the phone"

    # A year: the period picker offers it, and the page shows the whole year.
    await page.select_option("select[name=period]", "year")
    await page.fill("input[name=value]", "2026")
    await page.click("form.period button[type=submit]")
    await page.wait_for_url("**period=year*")
    assert await page.inner_text("h1") == "演示小区 · 年报 2026"
    assert await page.locator("#table-days tbody tr").count() == 365
    width = await page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 375, f"the year is {width} px wide on a 375 px phone"
