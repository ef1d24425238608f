"""The shed's side of the staff board, against the real central API over HTTP:
live snapshots, an alarm acknowledged on the board that ends a smoke lockout
at the shed, card changes carried out once."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import httpx

from api.db import make_engine, make_sessionmaker
from api.services.accounts import GrantSpec, create_user
from controller.core.model import Authorization, Session
from controller.live_snapshot import live_snapshot
from controller.uplink import CommandPoller, LiveSender, Uplink
from firmware_bridge.messages import EnvReading, Telemetry
from tests.core_helpers import T0
from tests.test_central_link import SHED, central, edge
from tests.test_orders_harness import eventually

__all__ = ["central"]  # the fixture
PASSWORD = "correct horse battery"


async def staff_login(db_url: str, url: str) -> dict[str, str]:
    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine).begin() as db:
            create_user(db, login="zhang", name="张师傅", password=PASSWORD,
                        grants=[GrantSpec("staff", "demo")], now_ms=T0)  # fmt: skip
    finally:
        engine.dispose()
    async with httpx.AsyncClient(base_url=url) as http:
        r = await http.post("/api/v1/auth/password", json={"login": "zhang", "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}


def link(service: Any, url: str, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"})


async def test_live_snapshots_reach_the_board(tmp_path: Path, central: Any) -> None:
    c, url, token = central
    service, clock = edge(tmp_path, url, token)
    session = service.start_session(2, Authorization("order", "EBS0001", 300))
    assert isinstance(session, Session)
    clock.advance(60)  # a minute of charging at 240 W
    service.on_message(Telemetry(2, clock.now_ms(), 3, 230.0, 1.04, 240.0, 2004, True,
                                 temp_c=36.5))  # fmt: skip
    doc = live_snapshot(service.core, clock.now_ms())
    two = next(p for p in doc["ports"] if p["port"] == 2)
    assert (two["state"], two["w"], two["session_wh"], two["relay"]) == ("charging", 240.0, 4, True)
    assert two["session"] == session.id and two["temp_c"] == 36.5
    assert two["session_started_ms"] == T0

    staff = await staff_login(c.db, url)
    async with link(service, url, token) as client, httpx.AsyncClient(base_url=url) as http:
        sender = LiveSender(service, client, clock, every_s=5)
        assert await sender.send_once() is True
        assert await sender.send_once() is False  # the same moment again: the API keeps its own
        assert sender.counts == {"sent": 1, "stale": 1, "errors": 0}
        board = (await http.get("/api/v1/staff/board", headers=staff)).json()
    tile = next(t for t in board["sheds"][0]["sockets"] if t["port"] == 2)
    assert (tile["state"], tile["w"], tile["session_wh"], tile["temp_c"]) == (
        "charging", 240.0, 4, 36.5)  # fmt: skip
    assert board["sheds"][0]["power_w"] == 240.0


async def test_a_live_snapshot_that_cannot_be_sent_is_dropped(tmp_path: Path) -> None:
    service, clock = edge(tmp_path, "http://127.0.0.1:9", "t" * 20)
    depth = service.store.outbox_depth()
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9") as client:
        sender = LiveSender(service, client, clock, every_s=5)
        task = asyncio.create_task(sender.run())
        try:
            for expected in (1, 2):  # nothing listens on port 9

                async def failed(n: int = expected) -> bool:
                    return sender.counts["errors"] >= n

                await eventually(failed, what=f"{expected} failed snapshot(s)")
                clock.advance(5)  # the next one, 5 s later, fails the same way
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert sender.counts["sent"] == 0
    assert service.store.outbox_depth() == depth  # nothing was kept to send again


async def test_acknowledging_on_the_board_ends_a_smoke_lockout(
    tmp_path: Path, central: Any
) -> None:
    c, url, token = central
    service, clock = edge(tmp_path, url, token)
    service.on_message(EnvReading("smoke-1", clock.now_ms(), "smoke", 1.0, True))
    service.tick()
    service.on_message(EnvReading("smoke-1", clock.now_ms(), "smoke", 0.0, False))  # cleared
    service.tick()
    alarm = service.core.lockout()
    assert alarm is not None and not alarm.active  # cleared, not acknowledged: still locked
    refused = service.start_session(1, Authorization("order", "EBS0002", 300))
    assert not isinstance(refused, Session) and refused.code == "safety_lockout"

    staff = await staff_login(c.db, url)
    async with link(service, url, token) as client, httpx.AsyncClient(base_url=url) as http:
        uplink, poller = Uplink(service, client, clock), CommandPoller(service, client, clock)
        while await uplink.send_once():
            pass
        listed = (await http.get("/api/v1/staff/alarms", headers=staff)).json()
        assert [(a["kind"], a["source"], a["active"]) for a in listed] == [
            ("smoke", "shed", False)]  # fmt: skip
        ack = await http.post(f"/api/v1/staff/sheds/{SHED}/alarms/{alarm.id}/ack",
                              json={"note": "检查过，无火情"}, headers=staff)  # fmt: skip
        assert ack.status_code == 200, ack.text
        assert ack.json()["audit"]["result"] == "pending"
        again = await http.post(f"/api/v1/staff/sheds/{SHED}/alarms/{alarm.id}/ack",
                                json={"note": "again"}, headers=staff)  # fmt: skip
        assert (again.status_code, again.json()["code"]) == (409, "ack_pending")
        pending = (await http.get("/api/v1/staff/alarms", headers=staff)).json()[0]
        assert pending["ack_pending"] is True and pending["acked_ms"] is None

        assert await poller.poll_once(wait_s=0) == 1  # the shed carries it out, reports back
        assert service.core.lockout() is None
        assert isinstance(service.start_session(1, Authorization("order", "EBS3", 300)), Session)
        while await uplink.send_once():
            pass
        done = (await http.get("/api/v1/staff/alarms?status=all", headers=staff)).json()[0]
        audit = (await http.get("/api/v1/staff/audit", headers=staff)).json()
    assert (done["acked_by"], done["note"], done["ack_pending"]) == (
        "zhang",
        "检查过，无火情",
        False,
    )
    assert [(e["action"], e["actor"], e["result"]) for e in audit] == [
        ("ack_alarm", "zhang", "ok")]  # fmt: skip


async def test_card_commands_add_top_ups_once_and_keep_what_they_leave_out(
    tmp_path: Path, central: Any
) -> None:
    _c, url, token = central
    service, clock = edge(tmp_path, url, token)
    async with link(service, url, token) as client:
        poller = CommandPoller(service, client, clock)
        top_up = {"id": "k1", "seq": 1, "kind": "cards",
                  "data": {"cards": [{"uid": "0a0b", "top_up_fen": 500}]}}  # fmt: skip
        assert poller.execute(top_up)["ok"]
        assert poller.execute(top_up)["ok"]  # delivered twice: added once
        assert service.core.cards["0A0B"].balance_fen == 500
        entry = {"uid": "0A0B", "plan_until_ms": T0 + 1, "blocked": None}
        plan = {"id": "k2", "seq": 2, "kind": "cards", "data": {"cards": [entry]}}
        assert poller.execute(plan)["ok"]
        card = service.core.cards["0A0B"]
        assert (card.balance_fen, card.plan_until_ms, card.blocked) == (500, T0 + 1, False)
        entry = {"uid": "0A0B", "blocked": True, "top_up_fen": 100}
        block = {"id": "k3", "seq": 3, "kind": "cards", "data": {"cards": [entry]}}
        assert poller.execute(block)["ok"]
        assert (service.core.cards["0A0B"].balance_fen, service.core.cards["0A0B"].blocked) == (
            600, True)  # fmt: skip
