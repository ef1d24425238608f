"""The demo stack in a real browser: what a newcomer does after `ebshed demo`.

The whole demo runs in the test's event loop at a live speed (simulated time
30 times real time): the embedded broker, the controller with its simulated
boards and bikes, the central API and the payment provider simulator over
real HTTP. A resident scans socket 7's sticker URL in headless Chromium, pays
2 yuan on the provider's page, is sent back to the order page, watches the
bike charge (a simulated bike is plugged in for whoever pays from a browser),
stops from the phone and sees the receipt with the refund. Then staff log in
with the credentials the demo prints and acknowledge the alarm of a socket the
simulator overheats, and the community office opens its report.

The day starts at 02:30, when nobody arrives in the simulated shed, so the
socket stays the test's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulators.demo import Demo, DemoOptions, demo_stack
from tests.browser import open_phone

pytest_plugins = ["tests.browser"]

PORT = 7
PHONE = "13700137000"


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    opts = DemoOptions(hours=3.0, speed="30", data_dir=tmp_path, sockets=12, seed=5,
                       start_hour=2.5, live=False)
    async with demo_stack(opts) as running:
        stop = asyncio.Event()
        day = asyncio.create_task(running.run(stop))
        try:
            yield running
        finally:
            stop.set()
            await day


async def socket_free(url: str) -> None:
    """The shed has reported in and the socket can be paid for."""
    async with httpx.AsyncClient(base_url=url) as http:
        for _ in range(200):
            view = (await http.get(f"/api/v1/public/sheds/demo-1/sockets/{PORT}")).json()
            if view.get("payable"):
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"socket {PORT} never became payable: {view}")


async def test_scan_pay_charge_stop_refund_then_staff_and_office(
    demo: Demo, browser: Any
) -> None:
    url = demo.central.url
    await socket_free(url)
    phone = await open_phone(browser, url)
    page = phone.page

    # The QR sticker's URL: shed, socket, state and the price before paying.
    await page.goto(f"{url}/s/demo-1/{PORT}")
    assert await page.inner_text("h1") == f"{PORT}号插座"
    assert await page.inner_text("#socket-state") == "空闲，可以使用"
    assert "1元/4小时" in await page.inner_text("#price")
    await page.get_by_text("充 2.00 元").click()
    await page.fill("input[name=phone]", PHONE)
    await page.click("#pay-button")

    # The provider's pay page; after paying it sends the phone back to the order.
    await page.wait_for_url(f"{demo.central.provider.url}/pay/*")
    no = page.url.rsplit("/", 1)[1]
    await page.get_by_role("button", name="确认支付 / Pay").click()
    await page.wait_for_url(f"{url}/o/{no}", timeout=20_000)

    # The socket is on and the bike charges; the page follows by itself.
    shows = "([sel, text]) => document.querySelector(sel).textContent.includes(text)"
    await page.wait_for_function(shows, arg=["#order-status", "正在充电"], timeout=30_000)
    assert demo.shed.service.core.ports[PORT].session is not None
    await page.wait_for_function(
        "() => parseInt(document.querySelector('#duration').textContent) >= 5", timeout=30_000
    )
    assert int((await page.inner_text("#power")).split()[0]) > 50  # watts, from the meter

    # Stop from the phone: the shed stops, bills from the meter, the rest goes back.
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.click("#stop-button")
    await page.wait_for_selector("#receipt", timeout=30_000)
    await page.wait_for_function(
        "() => document.querySelector('#refund-status').textContent.includes('已退回原支付方式')",
        timeout=30_000,
    )
    billed = float((await page.inner_text("#billed")).split()[0])
    refund = float((await page.inner_text("#refund")).split()[0])
    assert billed > 0 and round((billed + refund) * 100) == 200
    assert "您已停止充电" in await page.inner_text("#end-reason")
    money = demo.central.money()
    assert money["paid_fen"] == money["orders_billed_fen"] + money["refunded_fen"]
    assert money["refunded_fen"] == money["provider_refunded_fen"] == round(refund * 100)
    assert phone.errors == []

    # Staff log in with the printed credentials and see the shed live.
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    board = await context.new_page()
    await board.goto(f"{url}/login?next=/board")
    await board.fill("input[name=login]", "staff")
    await board.fill("input[name=password]", demo.users["staff"])
    await board.click("#login-form button")
    await board.wait_for_url(f"{url}/board")
    await board.wait_for_selector(f"#tile-demo-1-{PORT}")
    assert await board.get_attribute("#tile-demo-1-1", "data-state") == "idle"

    # The simulator overheats a socket 20 simulated minutes in: the alarm arrives on
    # the board by itself; staff acknowledge it with a note, and the shed confirms.
    alarm = board.locator("li.alarm[data-kind=overtemp]").first
    await alarm.wait_for(timeout=90_000)
    await alarm.locator("input[name=note]").fill("已到现场检查")
    await alarm.locator("button").click()
    acked = board.locator("li.alarm[data-kind=overtemp] .acked").first
    await acked.wait_for(timeout=30_000)
    assert "staff" in await acked.inner_text()
    assert any(a.kind == "overtemp" and a.acked_by == "staff"
               for a in demo.shed.service.core.alarms.values())

    # The community office reads its compound's report.
    office = await browser.new_context(locale="zh-CN")
    reports = await office.new_page()
    await reports.goto(f"{url}/login?next=/reports")
    await reports.fill("input[name=login]", "office")
    await reports.fill("input[name=password]", demo.users["office"])
    await reports.click("#login-form button")
    await reports.wait_for_url(f"{url}/reports/demo")  # the compound's page
    assert "示范小区" in await reports.inner_text("body")
