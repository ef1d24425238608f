"""A resident's phone in real headless Chromium: from the shed page to the
public money page (no login), the month's figures as the API gives them, the
chart, English on request, and the month's PDF behind its link.

The API runs under uvicorn on a free port; the sessions arrive through the
real uplink and the office sets the grid price and an expense line over HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from api.web.money import money
from tests.browser import open_phone
from tests.test_money_page import PRICE, month_of, two_sheds_two_months

if TYPE_CHECKING:
    from tests.api_db import Api

pytest_plugins = ["tests.api_db", "tests.browser"]
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the page, not SQL


@pytest.fixture
async def served(db_url: str) -> AsyncIterator[Api]:
    from tests.api_db import serve_api  # after pytest rewrote it

    async with serve_api(db_url) as api:  # 2026-11-21
        await two_sheds_two_months(api)
        office = await api.user("office", "demo")
        for method, path, body in (
            ("PUT", "/api/v1/money/demo/settings",
             {"grid_fen_per_kwh": PRICE, "margin_for": "维修基金"}),
            ("PUT", "/api/v1/money/demo/meters/west-2/2026-11", {"energy_wh": 1640}),
            ("POST", "/api/v1/money/demo/expenses",
             {"month": "2026-11", "amount_fen": 150, "note": "更换保险丝"}),
        ):  # fmt: skip
            answer = await api.client.request(method, path, json=body, headers=office)
            assert answer.status_code in (200, 201), answer.text
        yield api


async def test_a_resident_reads_the_money_page_on_a_phone(served: Api, browser: Any) -> None:
    origin = str(served.client.base_url)
    data = (await served.client.get("/api/v1/money/demo")).json()
    november = month_of(data, "2026-11")
    phone = await open_phone(browser, origin)
    page = phone.page
    await page.goto(f"{origin}/s/east-1")
    await page.click("#money-link")
    await page.wait_for_url(f"{origin}/money/demo")
    assert await page.locator("h1").inner_text() == "车棚账目公开"
    assert "维修基金" in await page.locator("#margin-for").inner_text()
    month = page.locator("#month-2026-11")
    figures = {
        name: await month.locator(f'dd[data-figure="{name}"]').inner_text()
        for name in ("sessions", "taken", "electricity", "expenses", "margin", "losses")
    }
    assert figures == {
        "sessions": str(november["sessions"]),
        "taken": money(november["billed_fen"], "zh"),
        "electricity": money(november["electricity_fen"], "zh"),
        "expenses": money(november["expenses_fen"], "zh"),
        "margin": money(november["margin_fen"], "zh"),
        "losses": "0.100 度",
    }
    assert "更换保险丝" in await month.locator("ul.expenses").inner_text()
    assert await page.locator("figure svg").count() == 2
    total_sessions = sum(m["sessions"] for m in data["months"])
    total = await page.locator('#money-total dd[data-figure="sessions"]').inner_text()
    assert total == str(total_sessions)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing wider than the phone
    await phone.shot("money-page.png")

    await page.click("header a.lang")
    await page.wait_for_url(f"{origin}/money/demo?lang=en")
    assert await page.locator("h1").inner_text() == "The shed's money, in the open"
    margin = await page.locator('#month-2026-11 dd[data-figure="margin"]').inner_text()
    assert margin == money(november["margin_fen"], "en")

    href = await page.locator("#month-2026-11 a.pdf").get_attribute("href")
    pdf = await page.request.get(f"{origin}{href}")
    assert pdf.status == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert (await pdf.body()).startswith(b"%PDF")
    assert phone.errors == []
