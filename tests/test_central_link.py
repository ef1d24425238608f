"""The shed's uplink and command poller against the real central API over HTTP."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.main import create_app
from api.settings import ApiSettings
from controller.clock import SimClock
from controller.core.model import Authorization, Session
from controller.service import ControllerService
from controller.settings import settings_from_dict
from controller.uplink import CommandPoller, Uplink
from simulators.payment_server import LocalServer
from tests.core_helpers import T0
from tests.test_store_restart import RecordingBridge

ADMIN = "admin-token-for-tests-0123456789"
SHED = "link-1"


class Central:
    def __init__(self, tmp_path: Path) -> None:
        self.db = f"sqlite:///{tmp_path / 'central.sqlite'}"
        self.server: LocalServer | None = None

    async def start(self) -> str:
        app = create_app(ApiSettings(database_url=self.db, admin_token=ADMIN))
        self.server = LocalServer(app, lifespan=True)
        await self.server.start()
        return self.server.url

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None


@pytest.fixture
async def central(tmp_path: Path) -> AsyncIterator[tuple[Central, str, str]]:
    c = Central(tmp_path)
    url = await c.start()
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=url, headers=admin) as http:
        r = await http.post("/api/v1/admin/compounds", json={"id": "demo", "name": "示范小区"})
        assert r.status_code == 201, r.text
        r = await http.post("/api/v1/admin/sheds", json={
            "id": SHED, "name": "1号车棚", "compound_id": "demo", "ports": [1, 2, 3, 4]})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
    try:
        yield c, url, token
    finally:
        await c.stop()


def edge(tmp_path: Path, url: str, token: str) -> tuple[ControllerService, SimClock]:
    clock = SimClock(T0)
    ids = itertools.count(1)
    settings = settings_from_dict({
        "shed": {"id": SHED, "data_dir": str(tmp_path / "edge")},
        "boards": [{"id": "b1", "ports": [1, 2, 3, 4]}],
        "central": {"url": url, "token": token},
    })
    service = ControllerService(settings, clock, new_id=lambda: f"s{next(ids)}")
    bridge = RecordingBridge()
    bridge.service, service.bridge = service, bridge
    from firmware_bridge.messages import BoardStatus, Telemetry

    service.on_message(BoardStatus("b1", True))
    for p in (1, 2, 3, 4):
        service.on_message(Telemetry(p, T0, 1, 230.0, 0.0, 0.0, 1000 * p, False))
    bridge.on_change = lambda port: service.on_message(
        Telemetry(port, clock.now_ms(), 2, 230.0, 0.0, 0.0, 1000 * port, False))
    return service, clock


async def sessions_at_central(url: str) -> list[dict]:  # type: ignore[type-arg]
    async with httpx.AsyncClient(base_url=url,
                                 headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        r = await http.get(f"/api/v1/admin/sheds/{SHED}/sessions")
        r.raise_for_status()
        return list(r.json())


async def test_records_reach_the_api_once_even_when_replayed(
    tmp_path: Path, central: tuple[Central, str, str]
) -> None:
    _, url, token = central
    service, _ = edge(tmp_path, url, token)
    session = service.start_session(2, Authorization("order", "EBS0000001", 300))
    assert isinstance(session, Session)
    service.stop_session(2)
    service.tick()
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
        batch = service.store.outbox_batch(500)
        uplink = Uplink(service, client, service.clock)
        assert await uplink.send_once() == len(batch)
        assert service.store.outbox_depth() == 0
        # the same batch again (a lost answer made the shed retry): all duplicates
        r = await client.post(f"/api/v1/sheds/{SHED}/uplink", json={"records": batch})
        assert r.status_code == 200
        assert sorted(r.json()["duplicates"]) == sorted(rec["id"] for rec in batch)
        # another shed's path with this token is refused
        r = await client.post("/api/v1/sheds/other-shed/uplink", json={"records": []})
        assert r.status_code in (403, 404)
    rows = await sessions_at_central(url)
    assert len(rows) == 1


async def test_outage_is_buffered_and_drained_exactly_once(
    tmp_path: Path, central: tuple[Central, str, str]
) -> None:
    c, url, token = central
    service, _ = edge(tmp_path, url, token)
    await c.stop()  # the central API is down
    for port in (1, 2, 3):
        service.start_session(port, Authorization("order", f"EBS000000{port}", 300))
        service.stop_session(port)
    service.tick()
    depth = service.store.outbox_depth()
    assert depth > 0
    async with httpx.AsyncClient(base_url=url,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        uplink = Uplink(service, client, service.clock)
        with pytest.raises(httpx.HTTPError):
            await uplink.send_once()
        assert service.store.outbox_depth() == depth  # nothing lost
    new_url = await c.start()  # back, on a new address
    async with httpx.AsyncClient(base_url=new_url,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        uplink = Uplink(service, client, service.clock)
        while await uplink.send_once():
            pass
    assert service.store.outbox_depth() == 0
    rows = await sessions_at_central(new_url)
    assert len(rows) == 3


class Commands:
    """Commands sent as the admin, carried out by the edge's poller, then read back."""

    def __init__(self, service: ControllerService, url: str, token: str) -> None:
        self.service, self.url, self.token = service, url, token
        self.admin = {"Authorization": f"Bearer {ADMIN}"}

    async def send(self, kind: str, data: dict[str, Any]) -> str:
        async with httpx.AsyncClient(base_url=self.url, headers=self.admin) as http:
            r = await http.post(f"/api/v1/admin/sheds/{SHED}/commands",
                                json={"kind": kind, "data": data})  # fmt: skip
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def poll(self) -> int:
        async with httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}
        ) as client:
            return await CommandPoller(self.service, client, self.service.clock).poll_once(
                wait_s=1
            )

    async def status(self, cmd_id: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url, headers=self.admin) as http:
            r = await http.get(f"/api/v1/admin/sheds/{SHED}/commands/{cmd_id}")
        body: dict[str, Any] = r.json()
        return body


START = {"port": 4, "order_no": "EBS20261122A0007", "prepaid_fen": 300, "mode": "until_full"}


@pytest.fixture
def commands(tmp_path: Path, central: tuple[Central, str, str]) -> Commands:
    _, url, token = central
    service, _ = edge(tmp_path, url, token)
    return Commands(service, url, token)


async def test_a_command_from_the_api_starts_a_session_and_reports_back(commands: Commands) -> None:
    service = commands.service
    cmd_id = await commands.send("start_session", START)
    assert await commands.poll() == 1
    assert await commands.poll() == 0  # the cursor moved on
    session = service.core.ports[4].session
    assert session is not None
    body = await commands.status(cmd_id)
    assert body["result_ok"] is True, body
    assert body["result_data"] == {"session_id": session.id}


async def test_a_stop_for_an_order_leaves_another_residents_session_alone(
    commands: Commands,
) -> None:
    service = commands.service
    await commands.send("start_session", START)
    stale = [
        await commands.send("stop_session", {"port": 4, "reason": "resident",
                                             "order_no": "EBS20261122A0001"}),
        await commands.send("stop_session", {"port": 4, "reason": "staff",
                                             "session_id": "s-gone"}),
    ]  # fmt: skip
    assert await commands.poll() == 3
    session = service.core.ports[4].session
    assert session is not None and session.stop_ms is None  # still running
    for cmd_id in stale:
        body = await commands.status(cmd_id)
        assert body["result_ok"] is False and body["result_code"] == "session_changed", body
    mine = await commands.send("stop_session", {"port": 4, "reason": "resident",
                                                "order_no": START["order_no"]})  # fmt: skip
    assert await commands.poll() == 1
    assert session.stop_ms is not None and session.end_reason == "resident"
    assert (await commands.status(mine))["result_ok"] is True
