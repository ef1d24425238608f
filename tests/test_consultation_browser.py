"""A resident answers a consultation on a phone in real headless Chromium:
reads the old and new price side by side, logs in by SMS code on the page,
answers, changes the answer, sees the count; after the close the money page
shows the result. A phone not on the household list cannot answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from api.web.money import money
from tests.browser import open_phone
from tests.test_consultations import DAY, HOUSEHOLDS, open_tariff

if TYPE_CHECKING:
    from tests.api_db import Api

pytest_plugins = ["tests.api_db", "tests.browser"]
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the page, not SQL


@pytest.fixture
async def served(db_url: str) -> AsyncIterator[Api]:
    from tests.api_db import serve_api  # after pytest rewrote it

    async with serve_api(db_url, dev_endpoints=True) as api:
        await api.register_shed("east-1", ports=[1, 2])
        office = await api.user("office", "demo")
        imported = await api.client.post(
            "/api/v1/households/demo/import", content=HOUSEHOLDS, headers=office
        )
        assert imported.status_code == 200, imported.text
        yield api


async def log_in(api: Api, page: Any, phone: str) -> None:
    await page.fill("#sms-form input[name=phone]", phone)
    await page.click("#sms-form button")
    await page.wait_for_selector("#login-form")
    outbox = (await api.client.get("/api/v1/dev/sms", params={"phone": phone})).json()
    await page.fill("#login-form input[name=code]", outbox[0]["code"])
    await page.click("#login-form button")


async def test_a_household_answers_on_a_phone(served: Api, browser: Any) -> None:
    api = served
    origin = str(api.client.base_url)
    office = await api.user("office", "demo")
    c = await open_tariff(api, office)
    phone = await open_phone(browser, origin)
    page = phone.page
    await page.goto(f"{origin}/c/{c['id']}")
    assert await page.locator("h1").inner_text() == "夜间充电降价"
    assert await page.locator("#new-price").inner_text() == "1元/5小时"
    new_overnight = money(c["proposal"]["new"]["overnight_fen"], "zh")
    assert await page.locator("#new-overnight").inner_text() == new_overnight
    old_overnight = money(c["proposal"]["old"]["overnight_fen"], "zh")
    assert await page.locator("#old-overnight").inner_text() == old_overnight
    await log_in(api, page, "13800000001")
    await page.wait_for_selector("#answer-form")
    await page.click("#answer-form button[value=no]")
    await page.wait_for_selector("#my-answer")
    assert "不同意" in await page.locator("#my-answer").inner_text()
    await page.click("#answer-form button[value=yes]")  # changed before the close
    await page.wait_for_function(
        "document.querySelector('#my-answer').textContent.indexOf('不同意') < 0"
    )
    count = await page.locator("#consult-count").inner_text()
    assert count == "同意 1 户，不同意 0 户（共登记 3 户）"
    await phone.shot("consultation.png")

    stranger = await open_phone(browser, origin)
    await stranger.page.goto(f"{origin}/c/{c['id']}")
    await log_in(api, stranger.page, "13900000009")
    await stranger.page.wait_for_selector("#not-registered")
    assert await stranger.page.locator("#answer-form").count() == 0

    api.clock.now += 7 * DAY
    await page.goto(f"{origin}/money/demo")
    result = page.locator(f"#consultation-{c['id']}")
    assert "已通过" in await result.inner_text()
    await page.click(f"#consultation-{c['id']} a")
    await page.wait_for_selector("#consult-status")
    assert await page.locator("#answer-form").count() == 0  # closed
    assert phone.errors == [] and stranger.errors == []
