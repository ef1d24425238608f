"""The demo at its default speed (60x) on a loaded machine, and `--hours`.

`ebshed demo` runs the whole shed in one process at 60 times real time. The
soak test runs that stack for a bounded real time while a second process keeps
one core busy, and checks that nothing went wrong that the scenario did not
script: no failed start, relay fault or expired lease, no command that timed
out or was sent twice, and no warning in the log but the alarms of the
scripted events (an overheating socket, an overdrawing charger, a bay parked
in, and later in the day the smoke test and one board's power cut).

`EBSHED_DEMO_SOAK_S` sets the real seconds (default 150) for a longer run.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
from typer.testing import CliRunner

from controller.cli import app
from simulators.demo import DemoOptions, demo_stack, mosquitto_broker, mosquitto_path, run_demo

SOAK_S = float(os.environ.get("EBSHED_DEMO_SOAK_S", "150"))
# What the demo's scenario does on purpose (see DemoShed and simulators/scenario.py).
# The scenario's faulty charger (it never tapers) raises its anomaly warnings after
# about six simulated hours: scripted too.
SCRIPTED_ALARMS = {
    "overtemp", "overpower", "bay_idle", "smoke", "board_offline",
    "anomaly_no_taper", "anomaly_energy_excess",
}
UNSCRIPTED_ENDS = {"start_failed", "lease_expired", "relay_fault", "relay_off"}
ALARM_LINE = re.compile(r" WARNING ebshed\.controller: alarm (\w+) raised: (.*)$")
LEVEL = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) ")


@pytest.fixture
def cpu_burner() -> Iterator[subprocess.Popen[bytes]]:
    """Another process spinning on one core for the whole test."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def unscripted_log_lines(log: Path, power_cut_board: str) -> list[str]:
    """Warnings and errors in the demo's log other than the scripted alarms."""
    bad = []
    for line in log.read_text("utf-8").splitlines():
        if not LEVEL.match(line):
            continue
        alarm = ALARM_LINE.search(line)
        if alarm and alarm.group(1) in SCRIPTED_ALARMS - {"board_offline"}:
            continue
        if alarm and alarm.group(1) == "board_offline" and f"board {power_cut_board}:" in line:
            continue
        bad.append(line)
    return bad


# Deprecations in libraries are for developers: `ebshed demo` does not show them
# (Python's default filters), so neither does the log here.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_default_speed_on_a_loaded_machine_runs_without_unscripted_faults(
    tmp_path: Path, cpu_burner: subprocess.Popen[bytes]
) -> None:
    if os.environ.get("CI") == "true" and mosquitto_path() is None:
        pytest.fail("mosquitto is required in CI")
    opts = DemoOptions(hours=None, speed="60", data_dir=tmp_path, log_file=True)
    async with demo_stack(opts) as demo:
        assert demo.broker.name == ("mosquitto" if mosquitto_path() else "amqtt")
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(SOAK_S, stop.set)
        await demo.run(stop)
        assert cpu_burner.poll() is None  # the machine was loaded throughout
        summary = demo.summary(SOAK_S)
        victim = demo.shed.devices.mqtt_boards[-1].board_id
        victim_ports = set(demo.shed.devices.mqtt_boards[-1].ports)
        ports = {n: p.state.value for n, p in demo.shed.service.core.ports.items()}
    print(json.dumps({k: summary[k] for k in (
        "sim_hours", "broker", "sessions_started", "sessions_closed", "end_reasons", "alarms",
        "messages")}, ensure_ascii=False))
    # the clock kept pace: 60 simulated seconds a real second, give or take the start
    assert summary["sim_hours"] >= 0.95 * SOAK_S * 60 / 3600
    assert summary["sessions_started"] >= 10
    alarms = summary["alarms"]
    assert "overtemp" in alarms  # the scripted hot socket, 20 simulated minutes in
    assert set(alarms) <= SCRIPTED_ALARMS, alarms
    assert not UNSCRIPTED_ENDS & set(summary["end_reasons"]), summary["end_reasons"]
    # a session is interrupted only by the scripted power cut of one board (at 04:00)
    interrupted = {s["port"] for s in summary["sessions"] if s["end_reason"] == "interrupted"}
    assert interrupted <= victim_ports, (interrupted, victim)
    flags = {f for s in summary["sessions"] for f in s["flags"]}
    assert "start_failed" not in flags, flags
    messages = summary["messages"]
    for counter in ("commands_failed", "commands_retried", "unexpected_ack", "duplicate_ack",
                    "incoming_overflow", "reconnects", "sink_errors"):
        assert messages.get(counter, 0) == 0, (counter, messages)
    faults = [n for n, state in ports.items() if state == "fault"]
    assert len(faults) <= alarms.get("overtemp", 0) + alarms.get("overpower", 0), ports
    bad = unscripted_log_lines(tmp_path / "demo.log", victim)
    assert not bad, "\n".join(bad[:20])


def test_hours_runs_that_many_simulated_hours(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    result = CliRunner().invoke(app, [
        "demo", "--hours", "2", "--speed", "max", "--sockets", "12", "--seed", "3",
        "--summary-json", str(out), "--data-dir", str(tmp_path / "data"),
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text("utf-8"))
    # Two hours, and the few simulated minutes everyone takes to collect their bike:
    # not the night-long charges of whoever plugged in last.
    assert 2.0 <= summary["sim_hours"] <= 2.25, summary["sim_hours"]
    assert summary["sessions_started"] == summary["sessions_closed"] >= 5
    assert summary["sessions_open"] == 0
    assert max(s["minutes"] for s in summary["sessions"]) <= 2.25 * 60
    assert (tmp_path / "data" / "demo.log").exists()


async def test_headless_run_reports_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    opts = DemoOptions(hours=3.0, speed="max", data_dir=tmp_path, sockets=12, seed=3,
                       progress_every_s=1.0, log_file=True)
    summary = await run_demo(opts)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("progress: ")]
    assert len(lines) >= 3, err
    assert re.fullmatch(
        r"progress: simulated \d+\.\d h of 3 \(\d\d-\d\d \d\d:\d\d\), sessions \d+ started "
        r"\d+ closed \d+ open, wall \d+ s", lines[-1]), lines[-1]
    hours = [float(line.split()[2]) for line in lines]
    assert hours == sorted(hours) and hours[-1] <= 3.25
    assert f"MQTT broker: {summary['broker']} on 127.0.0.1:" in err
    assert re.search(rf"log: {re.escape(str(tmp_path / 'demo.log'))}: \d+ warnings\n", err), err


def test_mosquitto_is_found_off_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's PATH often lacks /usr/sbin, where Debian installs mosquitto."""
    installed = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
        None)
    if installed is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mosquitto is required in CI")
        pytest.skip("no mosquitto installed")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert mosquitto_path() == installed


async def test_mosquitto_broker_runs_in_its_own_process_and_ends_with_the_demo(
    tmp_path: Path,
) -> None:
    exe = mosquitto_path()
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mosquitto is required in CI")
        pytest.skip("no mosquitto installed")
    async with mosquitto_broker(exe, tmp_path) as port:
        async with aiomqtt.Client("127.0.0.1", port) as client:
            await client.subscribe("t/#", qos=1)
            await client.publish("t/1", b"hello", qos=1)
            async with asyncio.timeout(3):
                message = await anext(aiter(client.messages))
        assert message.payload == b"hello"
    with pytest.raises(ConnectionRefusedError):  # stopped with the demo
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_broker_that_does_not_start_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="did not start"):
        async with mosquitto_broker("/bin/false", tmp_path, attempts=2):
            pass


def test_the_broker_ends_when_the_demo_is_killed(tmp_path: Path) -> None:
    """Not left behind on its own port: a killed demo (kill -9, a closed terminal) takes
    its Mosquitto with it."""
    exe = mosquitto_path()
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mosquitto is required in CI")
        pytest.skip("no mosquitto installed")
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from simulators.demo import mosquitto_broker\n"
        "async def main():\n"
        "    async with mosquitto_broker(sys.argv[1], Path(sys.argv[2])) as port:\n"
        "        print(port, flush=True)\n"
        "        await asyncio.sleep(120)\n"
        "asyncio.run(main())\n"
    )
    demo = subprocess.Popen([sys.executable, "-c", script, exe, str(tmp_path)],
                            stdout=subprocess.PIPE)
    try:
        assert demo.stdout is not None
        port = int(demo.stdout.readline())
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # it runs
    finally:
        demo.kill()
        demo.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.1)
    pytest.fail(f"the broker on {port} outlived the demo")
