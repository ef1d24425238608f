"""The real entry points as separate processes: `controller run` and `sim shed`.

Both talk to the test Mosquitto; the test drives them through the controller's
local API and the `port` commands, and stops them with SIGTERM.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from tests.brokers import free_port, mqtt_broker_address

EBSHED = str(Path(sys.executable).parent / "ebshed")


def wait_for(predicate, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


@pytest.fixture
def shed_config(tmp_path: Path) -> tuple[Path, str]:
    host, port = mqtt_broker_address()
    shed = f"p-{uuid.uuid4().hex[:10]}"
    config = tmp_path / "shed.toml"
    config.write_text(
        f'[shed]\nid = "{shed}"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[mqtt]\nhost = "{host}"\nport = {port}\n'
        '[[boards]]\nid = "b1"\nports = [1, 2, 3, 4]\n'
        '[[cards]]\nuid = "04A1B2C3"\nbalance_fen = 500\n',
        "utf-8",
    )
    return config, shed


@pytest.fixture
def processes(
    shed_config: tuple[Path, str],
) -> Iterator[tuple[str, str, list[subprocess.Popen[bytes]]]]:
    config, shed = shed_config
    api = f"127.0.0.1:{free_port()}"
    ctl = subprocess.Popen(
        [EBSHED, "controller", "run", "--config", str(config), "--http", api],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    sim = subprocess.Popen(
        [EBSHED, "sim", "shed", "--config", str(config), "--speed", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    procs = [ctl, sim]
    try:
        yield f"http://{api}", shed, procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)


def test_controller_and_simulator_processes(processes: tuple[str, str, list]) -> None:  # type: ignore[type-arg]
    url, shed, (ctl, sim) = processes

    def all_idle() -> bool:
        ports = httpx.get(f"{url}/status", timeout=2).json()["ports"]
        return all(p["state"] == "idle" for p in ports)

    wait_for(all_idle)
    start = subprocess.run(
        [EBSHED, "port", "start", shed, "3", "--amount-fen", "100", "--controller", url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert start.returncode == 0, start.stdout + start.stderr
    assert json.loads(start.stdout)["auth"]["prepaid_fen"] == 100
    state = httpx.get(f"{url}/status", timeout=2).json()["ports"][2]
    assert state["state"] == "authorized"
    stop = subprocess.run(
        [EBSHED, "port", "stop", shed, "3", "--controller", url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert stop.returncode == 0, stop.stdout + stop.stderr
    wait_for(all_idle)

    # SIGTERM: the controller says offline (retained) and exits cleanly.
    ctl.send_signal(signal.SIGTERM)
    assert ctl.wait(15) == 0, ctl.stdout.read().decode() if ctl.stdout else ""
    host, port = mqtt_broker_address()
    seen: list[bytes] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, m: seen.append(m.payload)
    client.connect(host, port)
    client.subscribe(f"ebs/v1/{shed}/controller/status", 1)
    client.loop_start()
    try:
        wait_for(lambda: seen, 5)
    finally:
        client.loop_stop()
        client.disconnect()
    assert json.loads(seen[-1])["online"] is False
    sim.send_signal(signal.SIGINT)
    sim.wait(15)
