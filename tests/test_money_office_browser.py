"""The office's side of the money page in real headless Chromium: an office
user sets the grid price, adds an expense line, imports households and opens
a tariff consultation on `/board/money/demo` (the forms carry the CSRF token);
a bad value is refused with nothing changed; after a passing vote staff apply
the tariff with one button. The public page shows what the office set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from api.models import AuditEntry, Command
from tests.browser import TIMEOUT_MS
from tests.test_consultations import DAY, HOUSEHOLDS, answer, resident

if TYPE_CHECKING:
    from tests.api_db import Api

pytest_plugins = ["tests.api_db", "tests.browser"]
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the page, not SQL


@pytest.fixture
async def served(db_url: str) -> AsyncIterator[Api]:
    from tests.api_db import serve_api  # after pytest rewrote it

    async with serve_api(db_url, dev_endpoints=True) as api:
        await api.register_shed("east-1", ports=[1, 2])
        yield api


async def log_in(page: Any, origin: str, login: str, target: str) -> None:
    from tests.api_db import USER_PASSWORD

    await page.context.clear_cookies()
    await page.goto(f"{origin}/login?next={target.replace('/', '%2F')}")
    await page.fill("input[name=login]", login)
    await page.fill("input[name=password]", USER_PASSWORD)
    await page.click("#login-form button")
    await page.wait_for_url(f"{origin}{target}")


async def test_the_office_sets_the_money_page_and_opens_a_consultation(
    served: Api, browser: Any
) -> None:
    api = served
    origin = str(api.client.base_url)
    await api.user("office", "demo", login="wang")
    await api.user("staff", "demo", login="zhang")
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    await log_in(page, origin, "wang", "/board/money/demo")

    await page.fill("#settings-form input[name=grid]", "0")
    await page.click("#settings-form button")
    assert "bad_price" in await page.locator("#money-error").inner_text()
    assert (await api.client.get("/api/v1/money/demo")).json()["grid_fen_per_kwh"] is None
    await page.fill("#settings-form input[name=grid]", "62")
    await page.fill("#settings-form input[name=margin_for]", "维修基金")
    await page.click("#settings-form button")
    await page.wait_for_selector("#saved")
    await page.fill("#expense-form input[name=amount]", "4500")
    await page.fill("#expense-form input[name=note]", "灭火器年检")
    await page.click("#expense-form button")
    await page.wait_for_selector("#saved")
    await page.fill("#households-form textarea", HOUSEHOLDS)
    await page.click("#households-form button")
    await page.wait_for_selector("#saved")
    assert await page.locator("#household-count").inner_text() == "已登记 3 户"
    await page.select_option("#consultation-form select[name=kind]", "tariff")
    await page.fill("#consultation-form input[name=title]", "1元/5小时")
    await page.fill("#consultation-form input[name=fen_per_hour]", "20")
    await page.fill("#consultation-form input[name=days]", "7")
    await page.click("#consultation-form button")
    await page.wait_for_selector("#saved")

    data = (await api.client.get("/api/v1/money/demo")).json()
    assert data["grid_fen_per_kwh"] == 62 and data["margin_for"] == "维修基金"
    assert data["months"][-1]["expenses"] == [{"amount_fen": 4500, "note": "灭火器年检"}]
    [c] = data["consultations"]
    assert c["proposal"]["new"]["overnight_fen"] == 160
    for phone in ("13800000001", "13800000003"):
        assert (await answer(api, c["id"], await resident(api, phone), "yes")).status_code == 200

    api.clock.now += 7 * DAY
    await api.user("office", "demo", login="wang2")
    await api.user("staff", "demo", login="zhang2")
    await log_in(page, origin, "zhang2", "/board/money/demo")
    assert await page.locator("#settings-form").count() == 0  # staff do not set money
    await page.click(f"#consultation-{c['id']} .apply-form button")
    await page.wait_for_selector("#saved")
    assert await page.locator(f"#consultation-{c['id']} .apply-form").count() == 0
    with api.app.state.ctx.sessions() as db:
        assert [x.shed_id for x in db.scalars(select(Command).where(Command.kind == "tariff"))] == [
            "east-1"
        ]
        actions = set(db.scalars(select(AuditEntry.action)).all())
    assert {"money_settings", "money_expense", "households_import", "consultation_open",
            "consultation_apply", "tariff"} <= actions  # fmt: skip
    await page.goto(f"{origin}/money/demo")
    assert "已通过" in await page.locator(f"#consultation-{c['id']}").inner_text()
