"""Several API workers on one database: real uvicorn processes, real HTTP.

Two servers started with the documented command (`uvicorn --factory
api.main:create_app_from_env`) share a database and nothing else: a command
enqueued through one must reach a shed long-polling the other within a second.
"""

from __future__ import annotations

import asyncio
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
