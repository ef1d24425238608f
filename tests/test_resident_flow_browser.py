"""The resident's language and the SMS login, in a real headless Chromium on the
real central API (tests/test_orders_harness.py, tests/browser.py).

- The first visit follows the browser's Accept-Language; a language chosen on
  the socket page holds through the payment provider's page, the order page
  and the stop dialog (the provider sends the browser back without `?lang=`).
- On /me, asking for a code again within the minute keeps the code field: the
  first code is still valid.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import TIMEOUT_MS, Phone
from tests.test_orders_harness import PHONE_A, pay_env

pytest_plugins = ["tests.api_db", "tests.browser"]
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the pages, not SQL


async def phone_in(browser: Any, origin: str, locale: str) -> Phone:
    context = await browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, locale=locale
    )
    context.set_default_timeout(TIMEOUT_MS)
    return Phone(await context.new_page(), origin)


async def test_the_language_follows_the_browser_then_the_residents_choice(
    db_url: str, browser: Any
) -> None:
    async with pay_env(db_url, pay_workers=True, pay_worker_interval_ms=100) as env:
        shed = await env.shed((7, 8))
        site = f"{env.url}/s/{shed.shed_id}"

        english = await phone_in(browser, env.url, "en-US")
        await english.page.goto(f"{site}/7")
        assert await english.page.inner_text("h1") == "Socket 7"  # Accept-Language: en-US

        phone = await phone_in(browser, env.url, "zh-CN")
        page = phone.page
        await page.goto(f"{site}/7")
        assert await page.inner_text("h1") == "7号插座"
        await page.click("a.lang")  # the resident chooses English
        await page.wait_for_url(f"{site}/7?lang=en")
        await page.get_by_text("Charge for ¥2.00").click()
        await page.fill("input[name=phone]", PHONE_A)
        await page.click("#pay-button")
        await page.wait_for_url(f"{env.sim.url}/pay/*")
        no = page.url.rsplit("/", 1)[1]
        await page.get_by_role("button", name="确认支付 / Pay").click()
        await page.wait_for_selector("text=支付成功")

        await page.goto(f"{env.url}/o/{no}")  # the provider's return URL: no ?lang=
        await env.status_becomes(no, "starting")
        run = await env.start(shed, {"out_trade_no": no})
        await run.charge(5, 200.0)
        shows = "([sel, text]) => document.querySelector(sel)?.textContent === text"
        await page.wait_for_function(shows, arg=["#order-status", "Charging"])
        assert await page.inner_text("h1") == "1号车棚 · socket 7"
        questions: list[str] = []

        async def answer(dialog: Any) -> None:
            questions.append(dialog.message)
            await dialog.dismiss()

        page.on("dialog", answer)
        await page.click("#stop-button")
        assert questions == ["Stop charging? Unused money is refunded."]

        await page.goto(f"{site}/8")  # the next scan, still in English
        assert await page.inner_text("h1") == "Socket 8"
        await page.click("a.lang")  # and back to Chinese, which holds as well
        await page.wait_for_url(f"{site}/8?lang=zh")
        await page.goto(f"{env.url}/o/{no}")
        await page.wait_for_function(shows, arg=["#order-status", "正在充电"])
        assert phone.errors == [] and english.errors == []


async def test_asking_for_a_code_again_keeps_the_code_field(db_url: str, browser: Any) -> None:
    async with pay_env(db_url) as env:
        phone = await phone_in(browser, env.url, "zh-CN")
        page = phone.page
        await page.goto(f"{env.url}/me")
        await page.fill("input[name=phone]", PHONE_A)
        await page.click("#sms-form button")
        await page.wait_for_selector("#login-form")
        await page.click("#sms-form button")  # again, within the minute
        await page.wait_for_selector("[role=alert]")
        assert "验证码刚刚发过" in await page.inner_text("[role=alert]")
        assert await page.is_visible("#login-form input[name=code]")
        outbox = (await env.http.get("/api/v1/dev/sms", params={"phone": PHONE_A})).json()
        assert len(outbox) == 1  # one code was sent, and it still works
        await page.fill("input[name=code]", outbox[0]["code"])
        await page.click("#login-form button")
        await page.wait_for_selector("#me-phone")
        assert await page.inner_text("#me-phone") == "已登录：138****8000"
        assert phone.errors == []
