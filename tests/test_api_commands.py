"""The command channel: enqueue, the long poll, results."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.orm import Session

from api.errors import Invalid, NotFound
from api.models import Command
from api.services.commands import enqueue_command
from api.services.events import CommandResulted
from api.services.hooks import Hooks

if TYPE_CHECKING:
    from tests.api_db import Api, ApiFactory

pytest_plugins = ["tests.api_db"]

STOP = {"kind": "stop_session", "data": {"port": 1, "reason": "staff"}}
START = {
    "kind": "start_session",
    "data": {"port": 7, "order_no": "EBS20261122A0007", "prepaid_fen": 300, "mode": "until_full"},
}


async def enqueue(api: Api, shed_id: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.client.post(
        f"/api/v1/admin/sheds/{shed_id}/commands", json=body, headers=api.admin
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def poll(
    api: Api, shed_id: str, headers: dict[str, str], *, after: int = 0, wait: float = 0
) -> list[dict[str, Any]]:
    response = await api.client.get(
        f"/api/v1/sheds/{shed_id}/commands",
        params={"after": after, "wait": wait},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    commands: list[dict[str, Any]] = response.json()["commands"]
    return commands


async def test_pending_commands_come_at_once_in_seq_order(api: Api) -> None:
    shed_id, headers = await api.register_shed()
    first = await enqueue(api, shed_id, START)
    second = await enqueue(api, shed_id, STOP)
    assert (first["seq"], second["seq"]) == (1, 2)

    started = time.monotonic()
    got = await poll(api, shed_id, headers, wait=10)
    assert time.monotonic() - started < 1
    assert got == [
        {
            "id": first["id"],
            "seq": 1,
            "kind": "start_session",
            "created_ms": api.clock.now,
            "data": START["data"],
        },
        {
            "id": second["id"],
            "seq": 2,
            "kind": "stop_session",
            "created_ms": api.clock.now,
            "data": STOP["data"],
        },
    ]
    assert [c["id"] for c in await poll(api, shed_id, headers, after=1)] == [second["id"]]
    assert await poll(api, shed_id, headers, after=2) == []

    status = await api.client.get(
        f"/api/v1/admin/sheds/{shed_id}/commands/{first['id']}", headers=api.admin
    )
    assert status.json()["delivered_ms"] == api.clock.now


async def test_a_waiting_poll_wakes_when_a_command_is_enqueued(api_factory: ApiFactory) -> None:
    # A watcher interval far longer than the wake-up we expect: the in-process
    # notifier must wake the poll, not the database check.
    async with api_factory(command_poll_interval_ms=2000) as api:
        shed_id, headers = await api.register_shed()
        waiting = asyncio.create_task(poll(api, shed_id, headers, wait=10))
        await asyncio.sleep(0.3)
        assert not waiting.done()

        enqueued_at = time.monotonic()
        command = await enqueue(api, shed_id, STOP)
        got = await asyncio.wait_for(waiting, 5)
        assert time.monotonic() - enqueued_at < 1.0  # the watcher alone would take 2 s
        assert [c["id"] for c in got] == [command["id"]]


async def test_a_command_from_the_service_in_another_thread_wakes_the_poll(
    api_factory: ApiFactory,
) -> None:
    async with api_factory(command_poll_interval_ms=2000) as api:
        shed_id, headers = await api.register_shed()
        ctx = api.app.state.ctx

        def enqueue_in_a_worker_thread() -> str:
            with ctx.sessions() as db, db.begin():
                return enqueue_command(db, shed_id, "disable", {"port": 2}, now_ms=1).id

        waiting = asyncio.create_task(poll(api, shed_id, headers, wait=10))
        await asyncio.sleep(0.2)
        enqueued_at = time.monotonic()
        command_id = await asyncio.to_thread(enqueue_in_a_worker_thread)
        got = await asyncio.wait_for(waiting, 5)
        assert time.monotonic() - enqueued_at < 1.0  # the watcher alone would take 2 s
        assert got[0]["id"] == command_id
        assert got[0]["data"] == {"port": 2, "reason": ""}


async def test_an_uncommitted_command_is_not_handed_out(api: Api) -> None:
    shed_id, headers = await api.register_shed()
    ctx = api.app.state.ctx
    with ctx.sessions() as db:
        db.begin()
        enqueue_command(db, shed_id, "enable", {"port": 1}, now_ms=1)
        db.rollback()
    assert await poll(api, shed_id, headers, wait=0.3) == []
    # The seq taken by the rolled-back command is free again.
    assert (await enqueue(api, shed_id, STOP))["seq"] == 1


async def test_a_poll_times_out_empty(api: Api) -> None:
    shed_id, headers = await api.register_shed()
    other_id, _ = await api.register_shed()
    started = time.monotonic()
    waiting = asyncio.create_task(poll(api, shed_id, headers, wait=0.5))
    await asyncio.sleep(0.1)
    await enqueue(api, other_id, STOP)  # another shed's command does not count
    assert await waiting == []
    assert 0.45 < time.monotonic() - started < 2


async def test_wait_is_capped(api_factory: ApiFactory) -> None:
    async with api_factory(long_poll_max_s=0.3) as api:
        shed_id, headers = await api.register_shed()
        started = time.monotonic()
        assert await poll(api, shed_id, headers, wait=30) == []
        assert time.monotonic() - started < 2
    async with api_factory() as api:
        shed_id, headers = await api.register_shed()
        response = await api.client.get(
            f"/api/v1/sheds/{shed_id}/commands", params={"wait": -1}, headers=headers
        )
        assert response.status_code == 422


async def test_seqs_stay_unique_and_gapless_under_concurrent_enqueues(api: Api) -> None:
    shed_id, headers = await api.register_shed()
    ctx = api.app.state.ctx

    def one(i: int) -> int:
        with ctx.sessions() as db, db.begin():
            return enqueue_command(db, shed_id, "enable", {"port": 1 + i % 4}, now_ms=i).seq

    seqs = list(await asyncio.gather(*(asyncio.to_thread(one, i) for i in range(24))))
    assert sorted(seqs) == list(range(1, 25))
    got = await poll(api, shed_id, headers)
    assert [c["seq"] for c in got] == list(range(1, 25))


async def test_a_result_is_recorded_once(api_factory: ApiFactory) -> None:
    results: list[tuple[str, bool | None, str | None]] = []

    def on_result(db: Session, event: CommandResulted) -> None:
        results.append((event.command.id, event.command.result_ok, event.command.result_code))

    async with api_factory(hooks=Hooks(command_result=[on_result])) as api:
        shed_id, headers = await api.register_shed()
        command = await enqueue(api, shed_id, START)
        url = f"/api/v1/sheds/{shed_id}/commands/{command['id']}/result"
        refused = {"ok": False, "code": "busy", "message": "socket 7 is charging", "data": None}

        first = await api.client.post(url, json=refused, headers=headers)
        assert first.status_code == 200
        again = await api.client.post(url, json=refused, headers=headers)
        assert again.status_code == 200  # a retried report: fine, nothing changes

        other = {"ok": True, "code": None, "message": None, "data": {"session_id": "s-1"}}
        conflict = await api.client.post(url, json=other, headers=headers)
        assert conflict.status_code == 409
        assert conflict.json()["code"] == "result_conflict"

        assert results == [(command["id"], False, "busy")]
        status = (
            await api.client.get(
                f"/api/v1/admin/sheds/{shed_id}/commands/{command['id']}", headers=api.admin
            )
        ).json()
        assert (status["result_ok"], status["result_code"], status["result_ms"]) == (
            False,
            "busy",
            api.clock.now,
        )


async def test_results_for_unknown_or_foreign_commands(api: Api) -> None:
    shed_a, headers_a = await api.register_shed()
    shed_b, headers_b = await api.register_shed()
    command = await enqueue(api, shed_a, STOP)
    ok = {"ok": True}
    unknown = await api.client.post(
        f"/api/v1/sheds/{shed_a}/commands/c-nope/result", json=ok, headers=headers_a
    )
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "unknown_command"
    # Shed b cannot report on shed a's command, through its own path or a's.
    foreign = await api.client.post(
        f"/api/v1/sheds/{shed_b}/commands/{command['id']}/result", json=ok, headers=headers_b
    )
    assert foreign.status_code == 404
    other_path = await api.client.post(
        f"/api/v1/sheds/{shed_a}/commands/{command['id']}/result", json=ok, headers=headers_b
    )
    assert other_path.status_code == 403
    strict = await api.client.post(
        f"/api/v1/sheds/{shed_a}/commands/{command['id']}/result",
        json={"ok": "yes"},
        headers=headers_a,
    )
    assert strict.status_code == 422


async def test_commands_are_checked_against_the_contract(api: Api) -> None:
    shed_id, _ = await api.register_shed()
    url = f"/api/v1/admin/sheds/{shed_id}/commands"
    bad = [
        {"kind": "self_destruct", "data": {}},
        {"kind": "start_session", "data": {"port": 1, "order_no": "x", "prepaid_fen": 1.5}},
        {"kind": "start_session", "data": {"port": 1, "order_no": "x", "prepaid_fen": 0}},
        {"kind": "stop_session", "data": {"port": "1"}},
        {"kind": "tariff", "data": {"id": "t", "version": 1, "name": "x", "kind": "power_tier"}},
        {"kind": "cards", "data": {"cards": [{"uid": "04A1", "balance_fen": -5}]}},
    ]
    for body in bad:
        response = await api.client.post(url, json=body, headers=api.admin)
        assert response.status_code == 422, body
        assert response.json()["code"] in ("bad_command", "invalid_request"), body
    ghost = await api.client.post(
        "/api/v1/admin/sheds/ghost/commands", json=STOP, headers=api.admin
    )
    assert ghost.status_code == 404
    assert ghost.json()["code"] == "unknown_shed"

    ctx = api.app.state.ctx
    with ctx.sessions() as db, pytest.raises(Invalid):
        enqueue_command(db, shed_id, "cards", {"cards": "all"}, now_ms=1)
    with ctx.sessions() as db, pytest.raises(NotFound):
        enqueue_command(db, "ghost", "enable", {"port": 1}, now_ms=1)

    tariff = {
        "id": "evening",
        "version": 2,
        "name": "1元/3小时",
        "kind": "power_tier",
        "tiers": [{"max_w": 1100, "fen_per_hour": "33.34"}],
    }
    pushed = await enqueue(api, shed_id, {"kind": "tariff", "data": tariff})
    assert pushed["data"]["tiers"] == [{"max_w": 1100, "fen_per_hour": "33.34"}]
    assert pushed["data"]["tz_offset_minutes"] == 480  # normalised by tariff_to_dict
    with ctx.sessions() as db:
        assert db.get(Command, pushed["id"]) is not None
