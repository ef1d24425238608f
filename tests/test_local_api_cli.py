"""The operator API and the command line, against a live controller service."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from controller.cli import app
from controller.clock import SimClock
from controller.local_api import make_app
from tests.brokers import free_port
from tests.core_helpers import T0
from tests.test_store_restart import Shed


def make_shed(tmp_path: Path) -> Shed:
    import itertools

    shed = Shed(tmp_path, SimClock(T0), itertools.count(1))
    shed.online()
    return shed


def test_start_stop_and_problem_codes(tmp_path: Path) -> None:
    shed = make_shed(tmp_path)
    client = TestClient(make_app(shed.service))
    resp = client.post("/ports/2/start", json={"kind": "order", "prepaid_fen": 300})
    assert resp.status_code == 201
    session = resp.json()
    assert session["port"] == 2 and session["auth"]["prepaid_fen"] == 300
    busy = client.post("/ports/2/start", json={"kind": "order", "prepaid_fen": 300})
    assert busy.status_code == 409 and busy.json()["detail"]["code"] == "authorized"
    assert client.post("/ports/99/start", json={"prepaid_fen": 1}).status_code == 404
    bad = client.post("/ports/3/start", json={"kind": "order", "prepaid_fen": -5})
    assert bad.status_code == 422
    no_money = client.post("/ports/3/start", json={"kind": "order"})
    assert no_money.json()["detail"]["code"] == "prepaid_required"
    status = client.get("/status").json()
    assert {p["port"]: p["state"] for p in status["ports"]}[2] == "authorized"
    assert client.post("/ports/2/stop").status_code == 200
    again = client.post("/ports/2/stop")
    assert again.status_code == 409 and again.json()["detail"]["code"] == "no_session"
    sessions = client.get("/sessions").json()
    assert sessions[0]["end_reason"] == "operator"
    assert sessions[0]["billed_fen"] == 0 and sessions[0]["refund_fen"] == 300


def test_disable_enable_and_alarm_ack(tmp_path: Path) -> None:
    shed = make_shed(tmp_path)
    client = TestClient(make_app(shed.service))
    assert client.post("/ports/1/disable", json={"reason": "cracked cover"}).json()["state"] == (
        "disabled"
    )
    refused = client.post("/ports/1/start", json={"prepaid_fen": 100})
    assert refused.json()["detail"]["code"] == "disabled"
    assert client.post("/ports/1/enable").json()["state"] == "idle"
    assert client.post("/alarms/nope/ack", json={"by": "wang"}).status_code == 404


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Shed]]:
    """The local API on a real port, in a thread, for the CLI to talk to."""
    shed = make_shed(tmp_path)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(shed.service), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    yield f"http://127.0.0.1:{port}", shed
    server.should_exit = True
    thread.join(5)


def test_port_start_and_stop_commands(served: tuple[str, Shed]) -> None:
    url, shed = served
    runner = CliRunner()
    out = runner.invoke(app, ["port", "start", "demo-1", "4", "--amount-fen", "200",
                              "--controller", url])
    assert out.exit_code == 0, out.output
    assert shed.service.core.ports[4].session is not None
    wrong = runner.invoke(app, ["port", "start", "other-shed", "4", "--controller", url])
    assert wrong.exit_code == 2 and "runs shed 'demo-1'" in wrong.output
    busy = runner.invoke(app, ["port", "start", "demo-1", "4", "--controller", url])
    assert busy.exit_code == 1 and "[authorized]" in busy.output
    out = runner.invoke(app, ["port", "stop", "demo-1", "4", "--controller", url])
    assert out.exit_code == 0, out.output
    assert shed.service.core.ports[4].session is None


def test_every_command_has_help() -> None:
    runner = CliRunner()
    for args in (["--help"], ["demo", "--help"], ["controller", "run", "--help"],
                 ["sim", "shed", "--help"], ["port", "start", "--help"],
                 ["port", "stop", "--help"], ["bench", "telemetry", "--help"],
                 ["bench", "footprint", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert "Usage" in result.output


def test_unreachable_controller_is_a_clear_error() -> None:
    result = CliRunner().invoke(app, ["port", "stop", "demo-1", "1", "--controller",
                                      f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 3 and "not reachable" in result.output


def test_bad_config_is_reported_not_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "shed.toml"
    bad.write_text('[shed]\nid = "BAD ID"\n[[boards]]\nid = "b1"\nports = [1]\n', "utf-8")
    result = CliRunner().invoke(app, ["controller", "run", "--config", str(bad)])
    assert result.exit_code == 2 and "shed.id" in result.output
