"""The order page in a real headless Chromium, fed by a REAL controller: power,
energy and cost move with the shed's live readings while the resident watches
(not only at its 60 s checkpoints), a finished order shows what it cost (not
"cost so far"), and a start that failed says so instead of showing minutes.

The controller (tests/test_price_honesty.py's Edge: its SQLite store, uplink,
command poller and live sender over real HTTP) reports to the real central API
with the payment provider simulator (tests/test_orders_harness.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.uplink import LiveSender
from firmware_bridge.messages import CmdAck, PortCommand
from tests.browser import open_phone
from tests.test_orders_harness import PHONE_A, PayEnv, eventually, pay_env
from tests.test_price_honesty import THIRTY, Edge, config_toml

pytest_plugins = ["tests.api_db", "tests.browser"]
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the pages, not SQL

SHOWS = "([sel, text]) => document.querySelector(sel)?.textContent.trim() === text"


async def paid_order(env: PayEnv, edge: Edge, shed_id: str, port: int) -> str:
    created = await env.http.post("/api/v1/orders", json={
        "shed_id": shed_id, "port": port, "mode": "until_full", "phone": PHONE_A})  # fmt: skip
    assert created.status_code == 201, created.text
    await env.pay_on_page(created.json())
    no = str(created.json()["out_trade_no"])
    await env.status_becomes(no, "starting")

    async def started() -> bool:
        await edge.sync()
        return edge.service.core.ports[port].session is not None or bool(edge.service.closed)

    await eventually(started, what="the start on the shed")
    return no


async def open_edge(env: PayEnv, tmp_path: Path) -> tuple[Edge, str]:
    shed = await env.shed(hello=False)
    token = shed.headers["Authorization"].removeprefix("Bearer ")
    edge = Edge(config_toml(tmp_path, env.url, token, shed.shed_id, THIRTY), env, token)
    await edge.sync()
    return edge, shed.shed_id


async def test_the_order_page_moves_with_the_live_readings(
    db_url: str, tmp_path: Path, browser: Any
) -> None:
    async with pay_env(db_url, pay_workers=True, pay_worker_interval_ms=100) as env:
        edge, shed_id = await open_edge(env, tmp_path)
        try:
            no = await paid_order(env, edge, shed_id, 1)
            await env.status_becomes(no, "charging")
            phone = await open_phone(browser, env.url)
            page = phone.page
            await page.goto(f"{env.url}/o/{no}")
            assert await page.inner_text("#power") == "0 W"
            assert await page.inner_text("#cost") == "0.00 元"

            # 40 s at 600 W, before the shed's next 60 s checkpoint: only the
            # live snapshot (every 5 s) tells the central API.
            edge.charge(1, 600.0, 40)
            sent = [r["kind"] for r in edge.service.store.outbox_batch(100)]
            assert "session" not in sent, sent  # no checkpoint yet (the socket's state is)
            live = LiveSender(edge.service, edge.http, edge.clock)
            assert await live.send_once()
            await page.wait_for_function(SHOWS, arg=["#power", "600 W"])
            assert await page.inner_text("#cost") == "0.50 元"  # 1 started minute at 30 元/h
            assert await page.inner_text("#energy") != "0.00 度"
            assert (await page.inner_text("#left")) == "4.50 元"
            assert "已用金额" in await page.inner_text("#live")

            # Stopped: the page shows what it cost, no longer "cost so far".
            assert (await env.http.post(f"/api/v1/orders/{no}/stop")).status_code == 202

            async def closed() -> bool:
                await edge.sync()
                return bool(edge.service.closed)

            await eventually(closed, what="the stop on the shed")
            await env.status_becomes(no, "refunded")
            await page.wait_for_selector("#receipt")
            text = await page.inner_text("#live")
            assert "已用金额" not in text and "费用" in text, text
            assert await page.inner_text("#cost") == await page.inner_text("#billed") == "0.50 元"
            await page.goto(f"{env.url}/o/{no}?lang=en")
            text = await page.inner_text("#live")
            assert "Cost so far" not in text and "Cost" in text
            assert phone.errors == []
        finally:
            await edge.http.aclose()


class StuckBridge:
    """A board that never switches socket 2 on: its "on" is answered late, refused."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.held: list[PortCommand] = []

    def send_command(self, cmd: PortCommand) -> None:
        if cmd.port == 2 and cmd.op == "on":
            self.held.append(cmd)
            return
        self.inner.send_command(cmd)

    def refuse(self) -> None:
        for cmd in self.held:
            self.inner.service.on_message(CmdAck(cmd.port, cmd.id, False, False, "relay_stuck"))
        self.held.clear()

    def publish_port_state(self, *args: object) -> None:
        pass


async def test_a_failed_start_says_what_happened(db_url: str, tmp_path: Path, browser: Any) -> None:
    async with pay_env(db_url, pay_workers=True, pay_worker_interval_ms=100) as env:
        edge, shed_id = await open_edge(env, tmp_path)
        stuck = StuckBridge(edge.bridge)
        edge.service.bridge = stuck
        try:
            no = await paid_order(env, edge, shed_id, 2)
            edge.clock.advance_to(edge.clock.now_ms() + 150_000)  # minutes of waiting
            stuck.refuse()
            await edge.sync()
            view = await env.status_becomes(no, "refunded")
            assert view["session"]["end_reason"] == "start_failed"
            phone = await open_phone(browser, env.url)
            page = phone.page
            await page.goto(f"{env.url}/o/{no}")
            await page.wait_for_selector("#receipt")
            assert await page.inner_text("#duration") == "未通电"
            assert "插座未能启动" in await page.inner_text("#end-reason")
            receipt = await page.inner_text("#receipt")
            assert "未能开始充电，不收费" in receipt and "分钟" not in receipt, receipt
            assert await page.inner_text("#billed") == "0.00 元"
            assert await page.inner_text("#refund") == "5.00 元"
            assert "已用金额" not in await page.inner_text("#live")
            assert phone.errors == []
        finally:
            await edge.http.aclose()
