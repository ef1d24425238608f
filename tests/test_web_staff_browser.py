"""The staff board in a real headless Chromium, on the real central API over HTTP.

uvicorn serves `create_app` (SQLite); a fake shed posts records and live
snapshots on the real shed endpoints and answers the commands the board
sends. Staff log in, see a socket change state live (no reload), acknowledge
an alarm, disable a socket. The screenshots of docs/staff-board.md are made
when docs/screenshots.sh runs these tests. Without chromium or playwright the tests are skipped
here and FAIL in CI (`CI=true`), like tests/test_web_browser.py.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.db import make_engine, make_sessionmaker, upgrade
from api.main import create_app
from api.services.accounts import GrantSpec, create_user
from api.settings import ApiSettings
from simulators.payment_server import LocalServer
from tests.browser import screenshots_dir

ADMIN = "admin-token-for-the-board-tests"
PASSWORD = "correct horse battery"
TIMEOUT_MS = 15_000
pytest_plugins = ["tests.browser"]


class FakeShed:
    def __init__(self, url: str, shed_id: str, token: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"})
        self.id = shed_id
        self.versions: dict[tuple[str, str], int] = {}
        self.ids = itertools.count(1)
        self.after = 0
        self.ports: dict[int, dict[str, Any]] = {}

    async def record(self, kind: str, key: str, data: dict[str, Any], ts: int) -> None:
        version = self.versions.get((kind, key), 0) + 1
        self.versions[(kind, key)] = version
        record = {"id": f"r{next(self.ids)}", "kind": kind, "key": key, "version": version,
                  "ts": ts, "data": data}  # fmt: skip
        r = await self.http.post(f"/api/v1/sheds/{self.id}/uplink", json={"records": [record]})
        assert r.status_code == 200 and not r.json()["rejected"], r.text

    async def socket(self, port: int, state: str, ts: int, **live: Any) -> None:
        """A state change (the record) and the live readings that go with it."""
        await self.record("socket", str(port), {"port": port, "state": state, "since": ts}, ts)
        self.ports[port] = {"port": port, "state": state, "since": ts, **live}
        body = {"taken_ms": ts, "ports": list(self.ports.values()),
                "bays": [{"bay": 1, "occupied": True, "since": ts, "port": 1}]}  # fmt: skip
        r = await self.http.post(f"/api/v1/sheds/{self.id}/live", json=body)
        assert r.status_code == 200, r.text

    async def next_command(self) -> dict[str, Any]:
        r = await self.http.get(f"/api/v1/sheds/{self.id}/commands",
                                params={"after": self.after, "wait": 5})  # fmt: skip
        commands = r.json()["commands"]
        assert len(commands) == 1, commands
        self.after = commands[0]["seq"]
        command: dict[str, Any] = commands[0]
        return command

    async def answer(self, command: dict[str, Any], ok: bool = True) -> None:
        r = await self.http.post(f"/api/v1/sheds/{self.id}/commands/{command['id']}/result",
                                 json={"ok": ok, "data": {}})  # fmt: skip
        assert r.status_code == 200, r.text


@pytest.fixture
async def central(tmp_path: Path) -> AsyncIterator[tuple[str, FakeShed]]:
    db = f"sqlite:///{tmp_path / 'central.sqlite'}"
    upgrade(db)
    settings = ApiSettings(
        database_url=db, admin_token=ADMIN, board_poll_interval_ms=100, cookie_secure=False
    )
    server = LocalServer(create_app(settings), lifespan=True)
    await server.start()
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=server.url, headers=admin) as http:
        await http.post("/api/v1/admin/compounds", json={"id": "demo", "name": "演示小区"})
        r = await http.post("/api/v1/admin/sheds", json={
            "id": "shed-1", "name": "1号车棚", "compound_id": "demo", "ports": list(range(1, 13)),
            "bays": [{"number": 1, "port": 1}, {"number": 2, "port": 2}]})  # fmt: skip
        assert r.status_code == 201, r.text
        token = r.json()["token"]
    engine = make_engine(db)
    with make_sessionmaker(engine).begin() as session:
        create_user(session, login="zhang", name="张师傅", password=PASSWORD,
                    grants=[GrantSpec("staff", "demo")], now_ms=0)  # fmt: skip
    engine.dispose()
    shed = FakeShed(server.url, "shed-1", token)
    try:
        yield server.url, shed
    finally:
        await shed.http.aclose()
        await server.stop()


async def test_staff_log_in_watch_live_acknowledge_and_disable(
    central: tuple[str, FakeShed], browser: Any
) -> None:
    url, shed = central
    now = time.time_ns() // 1_000_000  # the API's clock is the wall clock here
    for port in range(1, 13):
        on = port in (1, 4, 7)
        await shed.socket(
            port,
            "charging" if on else "idle",
            now + port,
            w=180.0 + port * 10 if on else 0.0,
            session_wh=300 * port if on else None,
            session_started_ms=now - 5_400_000 if on else None,
            temp_c=31.0 + port / 2,
            relay=on,
        )
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        # Not logged in: the board sends staff to the login page, and back after it.
        await page.goto(f"{url}/board")
        assert page.url.startswith(f"{url}/login?next=")
        await page.fill("input[name=login]", "zhang")
        await page.fill("input[name=password]", "wrong password")
        await page.click("#login-form button")
        assert await page.inner_text("#login-error") == "账号或密码不对"
        assert errors == [
            "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
        ]  # the login page answered 401, as it should
        errors.clear()
        await page.fill("input[name=password]", PASSWORD)
        await page.click("#login-form button")
        await page.wait_for_url(f"{url}/board")
        assert await page.inner_text("#who") == "张师傅"
        assert await page.get_attribute("#tile-shed-1-1", "data-state") == "charging"

        # A socket changes state at the shed: the board shows it without a reload.
        text_is = "([id, text]) => document.getElementById(id).textContent.includes(text)"
        await page.wait_for_function(text_is, arg=["live-note", "页面实时更新，无需刷新"])
        await page.evaluate("window.__sameDocument = true")
        await shed.socket(3, "charging", now + 5_000, w=245.0, session_wh=12,
                          session_started_ms=now + 5_000, temp_c=33.0, relay=True)  # fmt: skip
        await page.wait_for_function(text_is, arg=["tile-shed-1-3", "245 W"])
        assert await page.get_attribute("#tile-shed-1-3", "data-state") == "charging"
        assert await page.evaluate("window.__sameDocument === true")
        await page.screenshot(path=str(screenshots_dir() / "staff-board.png"), full_page=True)

        # An alarm arrives live; staff acknowledge it with a note; the shed confirms.
        await shed.record("alarm", "a-7", {"id": "a-7", "kind": "overtemp", "port": 7,
                                           "raised_ms": now + 6_000, "active": True,
                                           "detail": "socket 7 at 68 °C"}, now + 6_000)  # fmt: skip
        alarm = "#alarm-shed-1-a-7"
        await page.wait_for_selector(alarm)
        assert "插座高温" in await page.inner_text(alarm)
        await page.screenshot(path=str(screenshots_dir() / "staff-board-alarm.png"), full_page=True)
        await page.fill(f"{alarm} input[name=note]", "已断电检查，插头烧焦，更换")
        await page.click(f"{alarm} button")
        await page.wait_for_selector(f"{alarm} .pending")
        command = await shed.next_command()
        assert command["kind"] == "ack_alarm" and command["data"]["by"] == "zhang"
        await shed.answer(command)
        await shed.record("alarm", "a-7", {**command["data"], "id": "a-7", "kind": "overtemp",
                                           "port": 7, "raised_ms": now + 6_000, "active": True,
                                           "detail": "socket 7 at 68 °C", "acked_ms": now + 9_000,
                                           "acked_by": "zhang", "note": command["data"]["note"]},
                          now + 9_000)  # fmt: skip
        await page.wait_for_selector(f"{alarm} .acked")
        assert "zhang 已确认：已断电检查" in await page.inner_text(f"{alarm} .acked")

        # Disable socket 7 for repair, with a reason, from its page.
        await page.click("#tile-shed-1-7")
        await page.wait_for_url(f"{url}/board/s/shed-1/7")
        await page.fill("#disable-form input[name=reason]", "更换插座")
        await page.click("#disable-form button")
        await page.wait_for_selector("#notice")
        command = await shed.next_command()
        assert (command["kind"], command["data"]) == ("disable", {"port": 7, "reason": "更换插座"})
        await shed.answer(command)
        await shed.socket(7, "disabled", now + 12_000, w=0.0, disabled_reason="更换插座")
        await page.reload()
        assert await page.inner_text("#socket-state") == "已停用"
        assert "停用" in await page.inner_text("#audit")
        assert "成功" in await page.inner_text("#audit")
        await page.screenshot(path=str(screenshots_dir() / "staff-socket.png"), full_page=True)
        await page.goto(f"{url}/board")
        assert await page.get_attribute("#tile-shed-1-7", "data-state") == "disabled"
        assert errors == []

        # Every form carries the session's token; a page of another origin that
        # posts the same form with the staff cookie is refused, nothing is sent.
        await page.goto(f"{url}/board/s/shed-1/8")
        token = await page.get_attribute("#disable-form input[name=csrf]", "value")
        assert token and len(token) == 40
        evil = LocalServer(_forging_page(f"{url}/board/s/shed-1/8/disable", token))
        await evil.start()
        try:
            await page.goto(evil.url)
            async with page.expect_response(f"{url}/board/s/shed-1/8/disable") as posted:
                await page.click("#forge")
            answer = await posted.value
            assert answer.status == 403
            assert (await answer.json())["code"] == "csrf_failed"
        finally:
            await evil.stop()
        r = await shed.http.get(f"/api/v1/sheds/{shed.id}/commands",
                                params={"after": shed.after, "wait": 0})  # fmt: skip
        assert r.json()["commands"] == []  # no disable queued
        errors.clear()  # the refused POST is logged as a failed load
    finally:
        await context.close()


def _forging_page(action: str, token: str) -> Any:
    """Another site's page with a copy of the board's disable form (even its token)."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    html = (f'<form method="post" action="{action}"><input name="reason" value="forged">'
            f'<input type="hidden" name="csrf" value="{token}">'
            '<button id="forge" type="submit">win a prize</button></form>')  # fmt: skip

    async def home(_request: Any) -> HTMLResponse:
        return HTMLResponse(html)

    return Starlette(routes=[Route("/", home)])


async def test_english_board_and_office_users_are_sent_elsewhere(
    central: tuple[str, FakeShed], browser: Any
) -> None:
    url, shed = central
    await shed.socket(1, "fault", time.time_ns() // 1_000_000, w=0.0)
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    try:
        await page.goto(f"{url}/login?lang=en")
        assert await page.inner_text("h1") == "Staff login"
        await page.fill("input[name=login]", "zhang")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("#login-form button")
        await page.wait_for_url(f"{url}/board?lang=en")
        assert "Fault" in await page.inner_text("#tile-shed-1-1")
        await page.select_option("#filter-state", "fault")
        await page.wait_for_url(f"{url}/board?*state=fault*")
        assert await page.locator(".tile").count() == 1
        await page.screenshot(path=str(screenshots_dir() / "staff-board-en.png"), full_page=True)
        await page.click("#logout")
        await page.wait_for_url(f"{url}/login*")
        await page.goto(f"{url}/board")
        assert page.url.startswith(f"{url}/login")
    finally:
        await context.close()
