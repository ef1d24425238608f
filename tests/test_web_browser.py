"""The resident pages in a real headless Chromium, as a resident's phone uses them,
on the REAL central API.

uvicorn on a free port serves `create_app` (the pages, the orders, public and
auth routers), with the real payment gateway, the provider simulator and its
pay page, and a fake shed on the real shed endpoints that the test drives
(tests/test_orders_harness.py), in Debian's chromium (tests/browser.py).

The provider simulator's pay page does not send the browser back yet (the
demo configures the provider's return URL); after "确认支付" the test opens
`/o/{out_trade_no}` itself, which is where that return URL points.

The screenshots of docs/resident-pages.md are made by these tests when
docs/screenshots.sh runs them (else they go to a temporary directory).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.browser import open_phone
from tests.test_orders_harness import PHONE_A, PayEnv, pay_env

pytest_plugins = ["tests.api_db", "tests.browser"]
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the pages, not SQL

PORTS = tuple(range(1, 13))


@pytest.fixture
async def env(db_url: str) -> AsyncIterator[PayEnv]:
    async with pay_env(db_url, pay_workers=True, pay_worker_interval_ms=100) as env:
        yield env


async def test_scan_pay_watch_stop_receipt(env: PayEnv, browser: Any) -> None:
    shed = await env.shed(PORTS)
    phone = await open_phone(browser, env.url)
    page = phone.page

    # Scan the sticker on socket 7: shed, socket, state and price before paying.
    await page.goto(f"{env.url}/s/{shed.shed_id}/7")
    assert await page.inner_text("h1") == "7号插座"
    assert await page.inner_text(".kicker") == "1号车棚"
    assert await page.inner_text("#socket-state") == "空闲，可以使用"
    assert "1元/4小时" in await page.inner_text("#price")
    assert await page.is_visible("#pay-button")
    await phone.shot("socket-page.png")

    # Choose 2 yuan, give the phone number, pay: the provider's pay page opens.
    await page.get_by_text("充 2.00 元").click()
    await page.fill("input[name=phone]", PHONE_A)
    await page.click("#pay-button")
    await page.wait_for_url(f"{env.sim.url}/pay/*")
    no = page.url.rsplit("/", 1)[1]
    assert "¥2.00" in await page.content()
    await page.get_by_role("button", name="确认支付 / Pay").click()
    await page.wait_for_selector("text=支付成功")

    # The provider's return URL: the order page, which follows the order by itself.
    await page.goto(f"{env.url}/o/{no}")
    await page.evaluate("window.__sameDocument = true")
    await env.status_becomes(no, "starting")
    run = await env.start(shed, {"out_trade_no": no})  # the socket is on
    await run.charge(30, 240.0)
    shows = "([sel, text]) => document.querySelector(sel).textContent === text"
    await page.wait_for_function(shows, arg=["#order-status", "正在充电"])
    await page.wait_for_function(shows, arg=["#duration", "30分钟"])
    await run.charge(15, 240.0)  # the next checkpoint from the shed
    await page.wait_for_function(shows, arg=["#duration", "45分钟"])
    assert await page.evaluate("window.__sameDocument === true")  # swapped in, not reloaded
    assert await page.inner_text("#power") == "240 W"
    assert await page.inner_text("#energy") == "0.18 度"
    assert await page.inner_text("#cost") == "0.19 元"
    assert await page.inner_text("#left") == "1.81 元"
    await phone.shot("order-progress.png")

    # Stop early from the phone: asked first; the shed stops, bills, the rest goes back.
    questions: list[str] = []

    async def accept(dialog: Any) -> None:
        questions.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    await page.click("#stop-button")
    command = await shed.next_command(wait=10)
    assert command["kind"] == "stop_session" and command["data"]["port"] == 7
    assert questions and "确定要停止充电吗" in questions[0]
    await shed.answer(command, True)
    await run.close("resident")
    await page.wait_for_selector("#receipt")
    await page.wait_for_function(  # a function, not a string: the pages' CSP forbids eval
        "() => document.querySelector('#refund-status').textContent.includes('已退回原支付方式')"
    )
    assert await page.evaluate("window.__sameDocument === true")
    receipt = await page.inner_text("#receipt")
    assert "充电时长（1元/4小时）" in receipt and "45 分钟" in receipt
    assert await page.inner_text("#billed") == "0.19 元"
    assert await page.inner_text("#refund") == "1.81 元"
    assert await page.inner_text("#order-status") == "已结束，已退款"
    assert "您已停止充电" in await page.inner_text("#end-reason")
    assert not await page.is_visible("#stop-button")
    await env.money_conserved(no)
    await phone.shot("order-receipt.png")

    # Nothing more will change: the page stops polling.
    polls: list[str] = []
    page.on("request", lambda req: polls.append(req.url) if "part=live" in req.url else None)
    await page.wait_for_timeout(2500)
    assert polls == []
    assert phone.errors == []


async def test_busy_socket_english_and_shed_page(env: PayEnv, browser: Any) -> None:
    shed = await env.shed(PORTS)
    await shed.socket(8, "charging")
    await shed.socket(9, "fault")
    phone = await open_phone(browser, env.url)
    page = phone.page
    site = f"{env.url}/s/{shed.shed_id}"

    await page.goto(f"{site}/8")
    assert await page.inner_text("#socket-state") == "正在使用"
    assert "这个插座正在使用中" in await page.inner_text(".reason")
    assert await page.locator("#pay").count() == 0
    assert "1元/4小时" in await page.inner_text("#price")  # the price is posted all the same
    await phone.shot("socket-busy.png")

    await page.goto(f"{site}/7")
    await page.click("a.lang")
    await page.wait_for_url(f"{site}/7?lang=en")
    assert await page.inner_text("h1") == "Socket 7"
    assert await page.inner_text("#pay-button") == "Pay"
    assert "Until full (deposit ¥5.00)" in await page.inner_text("#pay")
    await phone.shot("socket-page-en.png")

    # Someone else takes the socket: its live state hides the pay form.
    await shed.socket(7, "charging")
    await page.wait_for_selector("#pay", state="hidden")
    assert await page.inner_text("#socket-state") == "In use"

    await page.click("text=Free sockets and bays in this shed")
    await page.wait_for_url(f"{site}?lang=en")
    assert await page.inner_text("#free-sockets") == "9"  # 12 less busy, fault and taken
    await page.click("a.lang")
    await page.wait_for_url(f"{site}?lang=zh")
    assert "空闲插座" in await page.inner_text("#live")
    await phone.shot("shed-page.png")
    assert phone.errors == []


async def test_my_charges_after_sms_login(env: PayEnv, browser: Any) -> None:
    shed = await env.shed(PORTS)
    async with httpx.AsyncClient() as http:
        made = await http.post(
            f"{env.url}/s/{shed.shed_id}/5", data={"choice": "until_full", "phone": PHONE_A}
        )
        assert made.status_code == 303
        no = made.headers["location"].rsplit("/", 1)[1]
        await env.pay_on_page({"pay_url": made.headers["location"]})
    await env.status_becomes(no, "starting")
    run = await env.start(shed, {"out_trade_no": no})
    await run.charge(95, 180.0)

    phone = await open_phone(browser, env.url)
    page = phone.page
    await page.goto(f"{env.url}/me")
    await page.fill("input[name=phone]", PHONE_A)
    await page.click("#sms-form button")
    await page.wait_for_selector("#login-form")
    outbox = (await env.http.get("/api/v1/dev/sms", params={"phone": PHONE_A})).json()
    await page.fill("input[name=code]", outbox[0]["code"])
    await page.click("#login-form button")
    await page.wait_for_selector("#me-phone")
    assert await page.inner_text("#me-phone") == "已登录：138****8000"
    link = page.locator(f'a[href="/o/{no}"]')
    text = await link.inner_text()
    assert "1号车棚 · 5号插座" in text and "1小时35分钟" in text and "正在充电" in text
    await phone.shot("me-page.png")
    await link.click()
    await page.wait_for_url(re.compile(f"/o/{no}$"))
    assert await page.inner_text("#order-status") == "正在充电"
    assert await page.inner_text("#left") == "4.60 元"  # until full: 5 yuan deposit, 40 fen used
    assert phone.errors == []
