"""The central API's `GET /metrics`, on SQLite and PostgreSQL, and with several
uvicorn workers in prometheus_client's multiprocess mode."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from sqlalchemy.orm import Session

from api.services.events import ClosedSession
from api.services.hooks import Hooks
from api.services.session_closed import on_session_closed
from tests.brokers import free_port
from tests.prometheus_text import Samples, parse
from tests.prometheus_text import value as prom_value
from tests.test_api_uplink import record, session_row, socket_record

if TYPE_CHECKING:
    from tests.api_db import Api, ApiFactory

pytest_plugins = ["tests.api_db"]

ROOT = Path(__file__).resolve().parents[1]
UPLINK = "/api/v1/sheds/{shed_id}/uplink"


def value(samples: Samples, name: str, **labels: str) -> float:
    """A counter no one has counted yet is 0."""
    return prom_value(samples, name, absent=0.0, **labels)


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")  # no credentials: for the internal network
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def uplink(api: Api, shed_id: str, headers: dict[str, str], records: list[object]) -> None:
    response = await api.client.post(
        f"/api/v1/sheds/{shed_id}/uplink", json={"records": records}, headers=headers
    )
    assert response.status_code == 200, response.text


async def test_uplink_records_are_counted_by_outcome(api: Api) -> None:
    shed_id, headers = await api.register_shed(ports=[1, 2])
    good = [socket_record(1, "idle", 1), socket_record(2, "charging", 1)]
    unknown = record("nonsense", "k", 1, {})
    bad_key = record("socket", "9", 1, {"port": 2, "state": "idle", "since": 0})
    await uplink(api, shed_id, headers, [*good, unknown, bad_key])
    await uplink(api, shed_id, headers, good)  # the shed retries: duplicates

    m = await scrape(api.client)
    assert value(m, "ebshed_api_uplink_records_total", outcome="applied") == 2
    assert value(m, "ebshed_api_uplink_records_total", outcome="duplicate") == 2
    assert value(m, "ebshed_api_uplink_records_total", outcome="rejected") == 2
    assert value(m, "ebshed_api_uplink_rejections_total", code="unknown_kind") == 1
    assert value(m, "ebshed_api_uplink_rejections_total", code="key_mismatch") == 1
    requests = value(m, "ebshed_api_http_requests_total", method="POST", route=UPLINK, status="200")
    assert requests == 2


async def test_http_requests_by_route_template_and_status(api: Api) -> None:
    shed_id, headers = await api.register_shed(ports=[1])
    await api.client.get(f"/api/v1/sheds/{shed_id}/commands", headers=headers)
    await api.client.get(f"/api/v1/sheds/{shed_id}/commands", headers={})  # 401
    await api.client.get("/no/such/page")
    m = await scrape(api.client)
    route = "/api/v1/sheds/{shed_id}/commands"
    assert value(m, "ebshed_api_http_requests_total", method="GET", route=route, status="200") == 1
    assert value(m, "ebshed_api_http_requests_total", method="GET", route=route, status="401") == 1
    assert (
        value(m, "ebshed_api_http_requests_total", method="GET", route="unmatched", status="404")
        == 1
    )
    count = value(m, "ebshed_api_http_request_duration_seconds_count", method="GET", route=route)
    assert count == 2
    assert not any(shed_id in dict(labels).get("route", "") for _, labels in m)


async def test_commands_enqueued_results_and_latency(api: Api) -> None:
    shed_id, headers = await api.register_shed(ports=[1])
    body = {"kind": "stop_session", "data": {"port": 1, "reason": "staff"}}
    response = await api.client.post(
        f"/api/v1/admin/sheds/{shed_id}/commands", json=body, headers=api.admin
    )
    assert response.status_code == 201
    command_id = response.json()["id"]
    m = await scrape(api.client)
    assert value(m, "ebshed_api_commands_enqueued_total", kind="stop_session") == 1
    assert value(m, "ebshed_api_commands_waiting") == 1

    api.clock.now += 2_500  # the shed answers 2.5 s later
    url = f"/api/v1/sheds/{shed_id}/commands/{command_id}/result"
    result = {"ok": True, "code": None, "message": None, "data": None}
    assert (await api.client.post(url, json=result, headers=headers)).status_code == 200
    assert (await api.client.post(url, json=result, headers=headers)).status_code == 200
    conflict = {**result, "ok": False, "code": "busy"}
    assert (await api.client.post(url, json=conflict, headers=headers)).status_code == 409

    m = await scrape(api.client)
    assert value(m, "ebshed_api_command_results_total", kind="stop_session", ok="true") == 1
    assert value(m, "ebshed_api_command_results_total", kind="stop_session", ok="false") == 0
    assert value(m, "ebshed_api_command_latency_seconds_count", kind="stop_session") == 1
    assert value(m, "ebshed_api_command_latency_seconds_sum", kind="stop_session") == 2.5
    assert value(m, "ebshed_api_command_latency_seconds_bucket", kind="stop_session", le="2.5") == 1
    assert value(m, "ebshed_api_command_latency_seconds_bucket", kind="stop_session", le="1.0") == 0
    assert value(m, "ebshed_api_commands_waiting") == 0


async def test_sessions_and_sheds_online(api: Api) -> None:
    shed_id, headers = await api.register_shed(ports=[1, 2])
    await api.register_shed(ports=[1])  # never heard from
    opened = record("session", "s-1", 1, session_row("s-1", closed=False))
    await uplink(api, shed_id, headers, [opened])
    m = await scrape(api.client)
    assert value(m, "ebshed_api_sessions_opened_total") == 1
    assert value(m, "ebshed_api_sessions_open") == 1
    assert value(m, "ebshed_api_sheds", state="online") == 1
    assert value(m, "ebshed_api_sheds", state="offline") == 1

    closed = record("session", "s-1", 2, session_row("s-1", closed=True))
    await uplink(api, shed_id, headers, [closed, closed])
    api.clock.now += (api.settings.shed_offline_after_s + 1) * 1000
    m = await scrape(api.client)
    assert value(m, "ebshed_api_sessions_opened_total") == 1
    assert value(m, "ebshed_api_sessions_closed_total") == 1
    assert value(m, "ebshed_api_sessions_open") == 0
    assert value(m, "ebshed_api_sheds", state="online") == 0
    assert value(m, "ebshed_api_sheds", state="offline") == 2


async def test_what_a_rolled_back_transaction_wrote_is_not_counted(
    api_factory: ApiFactory,
) -> None:
    failing = True

    def flaky(db: Session, closed: ClosedSession) -> None:
        if failing:
            raise ConnectionError("payment provider unreachable")

    async with api_factory(hooks=Hooks(session_closed=[on_session_closed, flaky])) as api:
        shed_id, headers = await api.register_shed(ports=[2])
        closed = record("session", "s-1", 1, session_row("s-1", closed=True))
        transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            url = f"/api/v1/sheds/{shed_id}/uplink"
            response = await client.post(url, json={"records": [closed]}, headers=headers)
            assert response.status_code == 500
            m = await scrape(client)
            assert value(m, "ebshed_api_sessions_opened_total") == 0
            assert value(m, "ebshed_api_sessions_closed_total") == 0
            assert (
                value(
                    m, "ebshed_api_http_requests_total", method="POST", route=UPLINK, status="500"
                )
                == 1
            )
            failing = False
            await uplink(api, shed_id, headers, [closed])
            m = await scrape(client)
        assert value(m, "ebshed_api_sessions_opened_total") == 1
        assert value(m, "ebshed_api_sessions_closed_total") == 1


async def test_several_workers_report_together_in_multiprocess_mode(
    sqlite_template: Path, tmp_path: Path
) -> None:
    # One backend is enough here: this is about processes, not SQL.
    db_url = f"sqlite:///{tmp_path / 'central.sqlite'}"
    shutil.copyfile(sqlite_template, tmp_path / "central.sqlite")
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "EBSHED_API_DATABASE_URL": db_url,
        "EBSHED_API_AUTO_MIGRATE": "true",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app_from_env"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    log = (tmp_path / "uvicorn.log").open("wb")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)  # noqa: ASYNC220 (once, at the start)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for _ in range(300):  # up, and both workers have made their metrics files
                with contextlib.suppress(httpx.HTTPError):
                    healthy = (await client.get("/healthz")).status_code == 200
                    if healthy and len(list(metrics_dir.glob("counter_*.db"))) >= 2:
                        break
                await asyncio.sleep(0.1)
            assert len(list(metrics_dir.glob("counter_*.db"))) == 2, "two workers"
            before = value(
                await scrape(client),
                "ebshed_api_http_requests_total",
                method="GET",
                route="/healthz",
                status="200",
            )
            for _ in range(40):
                response = await client.get("/healthz", headers={"Connection": "close"})
                assert response.status_code == 200
            for _ in range(3):  # whichever worker answers, the sum is the same
                m = await scrape(client)
                total = value(
                    m,
                    "ebshed_api_http_requests_total",
                    method="GET",
                    route="/healthz",
                    status="200",
                )
                assert total == before + 40
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
