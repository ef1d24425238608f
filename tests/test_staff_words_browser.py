"""The staff board reads right, in a real headless Chromium on the real central API:
every time in its compound's time zone (Asia/Shanghai unless the compound has
its own), and alarm details and audit entries in the board's language, with
sheds by name, not the shed's English wording and ids.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from api.db import make_engine, make_sessionmaker, upgrade
from api.main import create_app
from api.services.accounts import GrantSpec, create_user
from api.settings import ApiSettings
from simulators.payment_server import LocalServer
from tests.test_web_staff_browser import ADMIN, PASSWORD, TIMEOUT_MS, FakeShed

pytest_plugins = ["tests.browser"]
SHANGHAI, URUMQI = ZoneInfo("Asia/Shanghai"), ZoneInfo("Asia/Urumqi")  # UTC+8, UTC+6


def shown(ms: int, zone: ZoneInfo) -> str:
    """A time as staff read it in `zone`: the time of day, with the date when not today."""
    when = datetime.fromtimestamp(ms / 1000, zone)
    today = datetime.fromtimestamp(time.time(), zone).date()
    return when.strftime("%H:%M:%S" if when.date() == today else "%m-%d %H:%M")


@pytest.fixture
async def two_compounds(tmp_path: Path) -> AsyncIterator[tuple[str, FakeShed, FakeShed]]:
    db = f"sqlite:///{tmp_path / 'central.sqlite'}"
    upgrade(db)
    settings = ApiSettings(database_url=db, admin_token=ADMIN, board_poll_interval_ms=100,
                           cookie_secure=False,
                           compound_timezones={"far": "Asia/Urumqi"})  # fmt: skip
    server = LocalServer(create_app(settings), lifespan=True)
    await server.start()
    tokens = {}
    async with httpx.AsyncClient(base_url=server.url,
                                 headers={"Authorization": f"Bearer {ADMIN}"}) as http:  # fmt: skip
        for compound, name, shed, shed_name in (("demo", "演示小区", "shed-1", "1号车棚"),
                                                ("far", "西区", "shed-2", "西区车棚")):  # fmt: skip
            await http.post("/api/v1/admin/compounds", json={"id": compound, "name": name})
            r = await http.post("/api/v1/admin/sheds", json={
                "id": shed, "name": shed_name, "compound_id": compound, "ports": [1, 2, 3],
                "bays": [{"number": 9, "port": 3}]})  # fmt: skip
            assert r.status_code == 201, r.text
            tokens[shed] = r.json()["token"]
    engine = make_engine(db)
    with make_sessionmaker(engine).begin() as session:
        create_user(session, login="zhang", name="张师傅", password=PASSWORD,
                    grants=[GrantSpec("staff", "demo"), GrantSpec("staff", "far")],
                    now_ms=0)  # fmt: skip
    engine.dispose()
    east, west = (FakeShed(server.url, s, tokens[s]) for s in ("shed-1", "shed-2"))
    try:
        yield server.url, east, west
    finally:
        await east.http.aclose()
        await west.http.aclose()
        await server.stop()


async def alarm(shed: FakeShed, key: str, raised: int, **data: Any) -> None:
    await shed.record("alarm", key, {"id": key, "raised_ms": raised, "active": True, **data},
                      raised)  # fmt: skip


async def test_times_in_the_compounds_zone_and_every_text_in_the_boards_language(
    two_compounds: tuple[str, FakeShed, FakeShed], browser: Any
) -> None:
    url, east, west = two_compounds
    now = time.time_ns() // 1_000_000
    for shed in (east, west):
        for port in (1, 2, 3):
            await shed.socket(port, "idle", now, w=0.0, relay=False)
    t1, t2, t3 = now - 3_600_000, now - 1_800_000, now - 600_000
    await alarm(east, "a-1", t1, kind="overtemp", port=2,
                detail="board tripped on over-temperature")  # fmt: skip
    await alarm(east, "a-2", t2, kind="bay_idle", bay=9,
                detail="bay 9 occupied 120 min without charging")  # fmt: skip
    await alarm(west, "a-3", t3, kind="board_offline", board="rs485-1",
                detail="board rs485-1: board sent its last will")  # fmt: skip

    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    await page.goto(f"{url}/login?next=/board")
    await page.fill("input[name=login]", "zhang")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("#login-form button")
    await page.wait_for_url(f"{url}/board")

    first = await page.inner_text("#alarm-shed-1-a-1")
    assert "主板过温保护已断电" in first and "1号车棚 · 2号插座" in first, first
    assert shown(t1, SHANGHAI) in first, (first, shown(t1, SHANGHAI))
    bay = await page.inner_text("#alarm-shed-1-a-2")
    assert "9号车位已占用 120 分钟，没有充电" in bay and shown(t2, SHANGHAI) in bay, bay
    offline = await page.inner_text("#alarm-shed-2-a-3")
    assert "主板 rs485-1 离线" in offline and "西区车棚" in offline, offline
    assert shown(t3, URUMQI) in offline, (offline, shown(t3, URUMQI))  # its compound's zone
    board = await page.inner_text("#alarms")
    for english in ("board tripped", "occupied", "last will", "shed-1", "shed-2"):
        assert english not in board, (english, board)

    # An audited action: its time and its words in the audit log.
    await page.goto(f"{url}/board/s/shed-1/3")
    await page.fill("#disable-form input[name=reason]", "更换插座")
    await page.click("#disable-form button")
    await page.wait_for_selector("#notice")
    done = time.time_ns() // 1_000_000
    await page.goto(f"{url}/board/audit")
    row = await page.locator("table tbody tr").first.inner_text()
    assert "1号车棚 · 3号插座" in row and "停用" in row and "port 3" not in row, row
    clock = re.search(r"\d\d:\d\d:\d\d", row)
    assert clock is not None, row
    local = datetime.fromtimestamp(done / 1000, SHANGHAI)
    at = local.replace(hour=int(clock[0][:2]), minute=int(clock[0][3:5]),
                       second=int(clock[0][6:]))  # fmt: skip
    assert abs((local - at).total_seconds()) < 60, (row, local)  # Beijing time, not UTC

    # The same board in English.
    await page.goto(f"{url}/board?lang=en")
    offline = await page.inner_text("#alarm-shed-2-a-3")
    assert "Board rs485-1 went offline" in offline and "last will" not in offline, offline
    assert "The board cut off on over-temperature" in await page.inner_text("#alarm-shed-1-a-1")
