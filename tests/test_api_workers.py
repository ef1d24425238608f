"""Several API workers on one database: real uvicorn processes, real HTTP.

Two servers started with the documented command (`uvicorn --factory
api.main:create_app_from_env`) share a database and nothing else: a command
enqueued through one must reach a shed long-polling the other within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.brokers import free_port

pytest_plugins = ["tests.api_db"]

ROOT = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "workers-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _start_server(db_url: str, log: IO[bytes]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "EBSHED_API_DATABASE_URL": db_url,
        "EBSHED_API_ADMIN_TOKEN": ADMIN_TOKEN,
        "EBSHED_API_AUTO_MIGRATE": "true",  # both at once: the upgrade must serialise
        "EBSHED_API_COMMAND_POLL_INTERVAL_MS": "200",
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app_from_env"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    return proc, f"http://127.0.0.1:{port}"


def _wait_healthy(proc: subprocess.Popen[bytes], base_url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{base_url} not healthy in {timeout} s")


@pytest.fixture
def two_workers(db_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    logs = [(tmp_path / f"worker-{i}.log").open("wb") for i in (1, 2)]
    servers = [_start_server(db_url, log) for log in logs]
    try:
        for proc, base_url in servers:
            _wait_healthy(proc, base_url)
        yield servers[0][1], servers[1][1]
    except AssertionError:
        for log in logs:
            log.flush()
        output = "\n".join(Path(log.name).read_text("utf-8", "replace") for log in logs)
        raise AssertionError(f"workers failed; their output:\n{output}") from None
    finally:
        for proc, _ in servers:
            proc.terminate()
        for proc, _ in servers:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()


async def test_a_command_enqueued_on_one_worker_reaches_a_poll_on_the_other(
    two_workers: tuple[str, str],
) -> None:
    worker_a, worker_b = two_workers
    async with httpx.AsyncClient(timeout=15) as client:
        compound = {"id": "demo", "name": "演示小区"}
        response = await client.post(
            f"{worker_a}/api/v1/admin/compounds", json=compound, headers=ADMIN
        )
        assert response.status_code == 201
        shed = {"id": "shed-w", "name": "车棚", "compound_id": "demo", "ports": [1, 2]}
        response = await client.post(f"{worker_a}/api/v1/admin/sheds", json=shed, headers=ADMIN)
        assert response.status_code == 201
        shed_auth = {"Authorization": f"Bearer {response.json()['token']}"}

        for attempt in range(2):  # twice: the second poll waits on a warmed-up worker
            after = attempt
            poll = asyncio.create_task(
                client.get(
                    f"{worker_b}/api/v1/sheds/shed-w/commands",
                    params={"after": after, "wait": 10},
                    headers=shed_auth,
                )
            )
            await asyncio.sleep(0.5)
            assert not poll.done()

            enqueued_at = time.monotonic()
            command = {"kind": "stop_session", "data": {"port": 1, "reason": "staff"}}
            response = await client.post(
                f"{worker_a}/api/v1/admin/sheds/shed-w/commands", json=command, headers=ADMIN
            )
            assert response.status_code == 201
            command_id = response.json()["id"]

            answer = await asyncio.wait_for(poll, 10)
            latency = time.monotonic() - enqueued_at
            assert answer.status_code == 200
            assert [c["id"] for c in answer.json()["commands"]] == [command_id]
            assert latency < 1.0, f"the other worker took {latency:.2f} s"

        # The result reported to worker b is what worker a sees.
        result = {"ok": True, "code": None, "message": None, "data": None}
        response = await client.post(
            f"{worker_b}/api/v1/sheds/shed-w/commands/{command_id}/result",
            json=result,
            headers=shed_auth,
        )
        assert response.status_code == 200
        response = await client.get(
            f"{worker_a}/api/v1/admin/sheds/shed-w/commands/{command_id}", headers=ADMIN
        )
        assert response.json()["result_ok"] is True


async def test_a_snapshot_posted_to_one_worker_reaches_a_board_stream_on_the_other(
    two_workers: tuple[str, str],
) -> None:
    """The staff board's live stream and the command channel both cross the two
    processes, in both directions; nothing but the database is shared."""
    worker_a, worker_b = two_workers
    async with httpx.AsyncClient(timeout=15) as client:
        compound = {"id": "live", "name": "直播小区"}
        response = await client.post(
            f"{worker_a}/api/v1/admin/compounds", json=compound, headers=ADMIN
        )
        assert response.status_code == 201
        shed = {"id": "shed-l", "name": "车棚", "compound_id": "live", "ports": [1, 2]}
        response = await client.post(f"{worker_a}/api/v1/admin/sheds", json=shed, headers=ADMIN)
        assert response.status_code == 201
        shed_auth = {"Authorization": f"Bearer {response.json()['token']}"}
        staff = {
            "login": "live-staff",
            "name": "值班",
            "password": "correct horse battery",
            "grants": [{"role": "staff", "compound_id": "live"}],
        }
        response = await client.post(f"{worker_a}/api/v1/admin/users", json=staff, headers=ADMIN)
        assert response.status_code == 201, response.text
        response = await client.post(
            f"{worker_b}/api/v1/auth/password",
            json={"login": "live-staff", "password": "correct horse battery"},
        )
        assert response.status_code == 200, response.text
        client.cookies.clear()  # the bearer token says who calls
        staff_auth = {"Authorization": f"Bearer {response.json()['token']}"}

        # The board's stream, on worker b.
        events: asyncio.Queue[tuple[str, str, float]] = asyncio.Queue()
        subscribed = asyncio.Event()

        async def listen() -> None:
            url = f"{worker_b}/board/events"
            async with client.stream(
                "GET", url, params={"shed": "shed-l", "lang": "en"}, headers=staff_auth
            ) as stream:
                assert stream.status_code == 200
                kind, data = "", []
                async for line in stream.aiter_lines():
                    if line.startswith(":"):
                        subscribed.set()
                    elif line.startswith("event:"):
                        kind = line.split(":", 1)[1].strip()
                    elif line.startswith("data:"):
                        data.append(line.split(":", 1)[1])
                    elif not line and kind:
                        await events.put((kind, "\n".join(data), time.monotonic()))
                        kind, data = "", []

        listener = asyncio.create_task(listen())
        try:
            await asyncio.wait_for(subscribed.wait(), 10)
            await asyncio.sleep(0.5)  # let worker b's watch take its first look
            now_ms = time.time_ns() // 1_000_000
            snapshot = {
                "taken_ms": now_ms,
                "ports": [
                    {"port": 1, "state": "charging", "since": now_ms - 60_000, "w": 987.6,
                     "temp_c": 33.0, "relay": True, "session": "s-live", "session_wh": 41,
                     "session_started_ms": now_ms - 60_000, "session_cost_fen": 7,
                     "disabled_reason": None},
                    {"port": 2, "state": "idle", "since": now_ms - 600_000, "w": 0.0,
                     "temp_c": 30.0, "relay": False, "session": None, "session_wh": 0,
                     "session_started_ms": None, "session_cost_fen": 0,
                     "disabled_reason": None},
                ],
                "bays": [],
            }  # fmt: skip
            posted_at = time.monotonic()
            response = await client.post(
                f"{worker_a}/api/v1/sheds/shed-l/live", json=snapshot, headers=shed_auth
            )
            assert response.status_code == 200 and response.json() == {"stored": True}
            while True:  # the first fragment of the shed that shows the new reading
                kind, data, at = await asyncio.wait_for(events.get(), 10)
                if kind == "shed" and "988 W" in data:
                    break
            # without the cross-worker watch it would wait for the 15 s refresh
            assert at - posted_at < 2.0, f"the board on worker b took {at - posted_at:.2f} s"
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

        # Commands the other way round: the shed polls worker a, the command is made on b.
        poll = asyncio.create_task(
            client.get(
                f"{worker_a}/api/v1/sheds/shed-l/commands",
                params={"after": 0, "wait": 10},
                headers=shed_auth,
            )
        )
        await asyncio.sleep(0.5)
        assert not poll.done()
        enqueued_at = time.monotonic()
        command = {"kind": "disable", "data": {"port": 2, "reason": "staff"}}
        response = await client.post(
            f"{worker_b}/api/v1/admin/sheds/shed-l/commands", json=command, headers=ADMIN
        )
        assert response.status_code == 201
        answer = await asyncio.wait_for(poll, 10)
        latency = time.monotonic() - enqueued_at
        assert [c["id"] for c in answer.json()["commands"]] == [response.json()["id"]]
        assert latency < 1.0, f"worker a took {latency:.2f} s"
