"""schemathesis against the API's own OpenAPI schema: every operation, valid and
invalid inputs, with the admin token and a shed's token, on PostgreSQL, over
real HTTP (uvicorn in a process of its own, payments on through the provider
simulator). No answer may be a 5xx, and every error must be a problem
response with a stable code.

Bounded: `MAX_EXAMPLES` cases per operation and generation mode (about a
minute on a quiet machine); EBSHED_SCHEMATHESIS_EXAMPLES raises it for a
longer run.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest_plugins = ["tests.api_db"]

schemathesis = pytest.importorskip("schemathesis") if os.environ.get("CI") != "true" else None
if schemathesis is None:  # in CI it must be there: fail, not skip
    import schemathesis

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

MAX_EXAMPLES = int(os.environ.get("EBSHED_SCHEMATHESIS_EXAMPLES", "40"))
ADMIN = "schemathesis-admin-7Hq2xZ9pL4mN8vB3cR6tY1wK5jD0sF"
CODE = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
SHED = "st-shed"
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up")


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )


@pytest.fixture
def served_api(postgres_database: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The API on PostgreSQL behind uvicorn, with payments on; its URL and a shed token."""
    from tests.api_db import _empty_postgres

    _empty_postgres(postgres_database)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        pay_port = _free_port()
        procs.append(_start(
            [sys.executable, "-m", "simulators.payment_provider", "--port", str(pay_port),
             "--credentials", str(tmp_path / "pay")], {}, tmp_path / "provider.log"))  # fmt: skip
        _wait(f"http://127.0.0.1:{pay_port}/pay/none", procs[-1], tmp_path / "provider.log")
        api_port = _free_port()
        url = f"http://127.0.0.1:{api_port}"
        env = {
            "EBSHED_API_DATABASE_URL": postgres_database,
            "EBSHED_API_ADMIN_TOKEN": ADMIN,
            "EBSHED_API_AUTO_MIGRATE": "false",
            "EBSHED_API_PUBLIC_BASE_URL": url,
            "EBSHED_API_PAY_CREDENTIALS_DIR": str(tmp_path / "pay"),
            "EBSHED_API_LONG_POLL_MAX_S": "0.05",  # generated waits stay short
            "EBSHED_API_COOKIE_SECURE": "false",
        }
        procs.append(_start(
            [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app_from_env",
             "--host", "127.0.0.1", "--port", str(api_port), "--log-level", "warning"],
            env, tmp_path / "api.log"))  # fmt: skip
        _wait(f"{url}/healthz", procs[-1], tmp_path / "api.log")
        admin = {"Authorization": f"Bearer {ADMIN}"}
        with httpx.Client(base_url=url, headers=admin, timeout=10) as http:
            http.post("/api/v1/admin/compounds", json={"id": "demo", "name": "演示小区"})
            made = http.post("/api/v1/admin/sheds", json={
                "id": SHED, "name": "1号车棚", "compound_id": "demo", "ports": [1, 2, 3, 4],
                "bays": [{"number": 1, "port": 1}]})  # fmt: skip
            assert made.status_code == 201, made.text
        yield url, made.json()["token"]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _problem_or_none(case: Any, response: Any) -> str | None:
    """Why an answer breaks the rules, or None."""
    where = f"{case.method} {case.formatted_path} -> {response.status_code}"
    if response.status_code >= 500:
        return f"{where}: server error {response.text[:300]}"
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"{where}: not a problem response: {response.text[:200]}"
    if case.operation.path == "/pay/notify/wechatpay":  # the provider's own error shape
        ok = isinstance(body, dict) and body.get("code") == "FAIL"
        return None if ok else f"{where}: {body}"
    if not (isinstance(body, dict) and isinstance(body.get("code"), str)
            and CODE.match(body["code"]) and isinstance(body.get("message"), str)):  # fmt: skip
        return f"{where}: not a problem response with a stable code: {response.text[:200]}"
    return None


def _runner(strategy: Any, shed_route: bool, check: Any) -> Any:
    """One operation's hypothesis test: cases from `strategy`, each checked."""

    @given(case=strategy, real_shed=st.booleans())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def run(case: Any, real_shed: bool) -> None:
        if shed_route and real_shed and case.path_parameters is not None:
            case.path_parameters["shed_id"] = SHED  # past the token check, deeper
        check(case, shed_route)

    return run


def test_schemathesis_finds_no_server_errors(served_api: tuple[str, str]) -> None:
    url, shed_token = served_api
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    admin = {"Authorization": f"Bearer {ADMIN}"}
    shed = {"Authorization": f"Bearer {shed_token}"}
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = 0

    def check(case: Any, shed_route: bool) -> None:
        response = case.call(base_url=url, headers=shed if shed_route else admin)
        statuses[response.status_code] += 1
        why = _problem_or_none(case, response)
        if why is not None and why not in failures:
            failures.append(why)

    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        shed_route = operation.path.startswith("/api/v1/sheds/{shed_id}")
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run = _runner(operation.as_strategy(generation_mode=mode), shed_route, check)
            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                assert mode is GenerationMode.NEGATIVE, operation.label
    took = time.monotonic() - started
    print(f"schemathesis: {operations} operations, {sum(statuses.values())} cases in "
          f"{took:.0f} s; statuses {dict(sorted(statuses.items()))}")  # fmt: skip
    assert operations > 40
    assert sum(statuses.values()) > operations * MAX_EXAMPLES
    assert not [s for s in statuses if s >= 500], failures
    assert failures == []
