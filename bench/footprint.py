"""`ebshed bench footprint`: resident memory and CPU of a controller for a 200-socket shed.

Method (docs/benchmarks.md has the long form):

- The controller runs as its own process, exactly as deployed:
  `ebshed controller run --config <generated TOML> --http 127.0.0.1:<free port>`,
  with its SQLite store in a temporary directory and a shed id of its own.
- The devices run in another process: every socket reports telemetry once a
  second (QoS 0, spread evenly over the second), and the boards answer every
  `cmd` with a `cmd/ack` and switch the port's relay as told, so an `on` makes
  the port draw its 150-300 W and the meter register count up.
- Once every socket has reported, a prepaid "until full" order is started on
  `session_share` of the sockets (all by default: the busiest evening) through the
  controller's local HTTP API, so metering, tariffs, charge-end detection, state
  publication, lease renewals and the one-minute checkpoints all run.
- After a warm-up, the controller's RSS and CPU time are sampled with psutil
  every second for `minutes`. Figure: peak RSS over the whole run (MB);
  CPU: CPU seconds / wall seconds over the measured window, in % of one core.
- `telemetry_url`: the controller also exports telemetry there (a `[telemetry]`
  section, InfluxDB v2 write API, e.g. a victoria-metrics), every
  `telemetry_interval_s`; the export's counters, read from its `/metrics`, go
  into `details.telemetry`.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import (
    START_FEN,
    TOPIC_ROOT,
    PortLoad,
    RawPublisher,
    ack_payload,
    board_layout,
    new_shed_id,
    now_ms,
    parse_broker,
    result,
    retained_topics,
    shed_config,
    to_toml,
)

RSS_TARGET_MB = 100.0
CPU_TARGET_PERCENT = 3.0
SLOTS_PER_S = 20  # sockets publish in 20 groups, 50 ms apart: no once-a-second burst
MB = 1024 * 1024


# --------------------------------------------------------------------------- devices process


def _devices_main(host: str, port: int, shed: str, sockets: int, conn: Connection) -> None:
    """Socket boards of the shed: telemetry once a second per socket, `cmd` answered."""
    load = PortLoad(shed, range(1, sockets + 1))
    counts = {"published": 0, "commands": 0}
    ready = threading.Event()

    def on_cmd(client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        payload = ack_payload(msg.payload)
        if payload is None:
            return
        counts["commands"] += 1
        port_no = int(msg.topic.split("/")[-2])
        if port_no in load.relay:
            load.relay[port_no] = b'"relay":true' in payload
        client.publish(f"{msg.topic}/ack", payload, qos=1)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{shed}-boards")
    client.on_message = on_cmd
    client.on_subscribe = lambda *_a: ready.set()
    client.connect(host, port, 30)
    client.loop_start()
    try:
        client.subscribe(f"{TOPIC_ROOT}/{shed}/port/+/cmd", 1)
        if not ready.wait(10):
            raise TimeoutError("the boards could not subscribe")
        conn.send(("ready",))
        groups = [load.ports[i::SLOTS_PER_S] for i in range(SLOTS_PER_S)]
        slot_s = 1.0 / SLOTS_PER_S
        next_at = time.monotonic()
        slot = 0
        while not conn.poll():
            ts = now_ms()
            for p in groups[slot]:
                client.publish(load.topic[p].decode(), load.sample(p, ts, 1.0), qos=0)
                counts["published"] += 1
            slot = (slot + 1) % SLOTS_PER_S
            next_at += slot_s
            time.sleep(max(0.0, next_at - time.monotonic()))
        conn.send(("stopped", counts["published"], counts["commands"]))
    finally:
        client.disconnect()
        client.loop_stop()


# --------------------------------------------------------------------------- controller process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start_controller(config: Path, http: str, log_path: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-c",
        "from controller.cli import main; main()",
        "controller",
        "run",
        "--config",
        str(config),
        "--http",
        http,
    ]
    with log_path.open("wb") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def _stop_controller(proc: subprocess.Popen[bytes]) -> int | None:
    """SIGINT (a clean stop: sessions persisted, offline status published), then harder."""
    for sig, wait_s in ((signal.SIGINT, 15.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait_s)
    return proc.poll()


def _wait_http(api: str, proc: subprocess.Popen[bytes], within_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the controller exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            status: dict[str, Any] = httpx.get(f"{api}/status", timeout=2).json()
            return status
        time.sleep(0.2)
    raise TimeoutError(f"the controller's API at {api} did not come up")


def _start_sessions(api: str, ports: list[int], within_s: float) -> dict[str, Any]:
    """POST /ports/{port}/start for each port; ports that have not reported yet are retried."""
    body = {"kind": "order", "prepaid_fen": START_FEN, "mode": "until_full"}
    todo, refused = list(ports), dict[str, int]()
    deadline = time.monotonic() + within_s
    with httpx.Client(base_url=api, timeout=10) as http:
        while todo and time.monotonic() < deadline:
            waiting = []
            for p in todo:
                resp = http.post(f"/ports/{p}/start", json=body)
                if resp.status_code == 201:
                    continue
                code = resp.json().get("detail", {}).get("code", str(resp.status_code))
                if code in ("no_meter_reading", "offline"):
                    waiting.append(p)
                else:
                    refused[code] = refused.get(code, 0) + 1
            todo = waiting
            if todo:
                time.sleep(0.5)
    return {"started": len(ports) - len(todo) - sum(refused.values()), "refused": refused}


class _Sampler:
    """RSS and CPU time of one process, sampled every `every_s` seconds."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.rows: list[tuple[float, int, float]] = []  # (monotonic s, rss bytes, cpu s)

    def sample(self) -> tuple[float, int, float]:
        with self.proc.oneshot():
            cpu = self.proc.cpu_times()
            row = (time.monotonic(), self.proc.memory_info().rss, cpu.user + cpu.system)
        self.rows.append(row)
        return row

    def run_for(self, seconds: float, every_s: float, alive: subprocess.Popen[bytes]) -> None:
        end = time.monotonic() + seconds
        next_at = time.monotonic()
        while time.monotonic() < end and alive.poll() is None:
            self.sample()
            next_at += every_s
            time.sleep(max(0.0, min(next_at, end) - time.monotonic()))
        if alive.poll() is None:
            self.sample()


def _cpu_percent(rows: list[tuple[float, int, float]]) -> float:
    if len(rows) < 2:
        return 0.0
    (t0, _, c0), (t1, _, c1) = rows[0], rows[-1]
    return 100.0 * (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0


def _worst_minute(rows: list[tuple[float, int, float]]) -> float | None:
    """The highest CPU % over any 60 s stretch of the window (None if it is shorter)."""
    worst = None
    j = 0
    for i in range(len(rows)):
        while j < len(rows) and rows[j][0] - rows[i][0] < 60.0:
            j += 1
        if j == len(rows):
            break
        cpu = _cpu_percent([rows[i], rows[j]])
        worst = cpu if worst is None else max(worst, cpu)
    return worst


def _telemetry_counts(api: str) -> dict[str, float]:
    """The export's counters from the controller's Prometheus metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{api}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("ebshed_controller_telemetry_"):
            for sample in family.samples:
                key = sample.name.removeprefix("ebshed_controller_telemetry_")
                if "reason" in sample.labels:
                    key += "." + sample.labels["reason"]
                out[key] = sample.value
    return out


# --------------------------------------------------------------------------- entry point


def _by_minute(rows: list[tuple[float, int, float]]) -> list[float]:
    """RSS (MB) at the start of the window and after each whole minute of it."""
    if not rows:
        return []
    t0, out = rows[0][0], list[float]()
    for t, rss, _ in rows:
        if t - t0 >= 60.0 * len(out):
            out.append(round(rss / MB, 1))
    return out


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def run(
    sockets: int = 200,
    minutes: float = 10.0,
    broker: str = "127.0.0.1:1883",
    *,
    warmup_s: float | None = None,
    session_share: float = 1.0,
    every_s: float = 1.0,
    telemetry_url: str | None = None,
    telemetry_interval_s: int = 10,
) -> dict[str, Any]:
    """Run the benchmark; return the result (see module docstring for the method)."""
    if minutes <= 0 or not 0.0 <= session_share <= 1.0:
        raise ValueError("minutes must be > 0 and session_share in 0..1")
    host, port = parse_broker(broker)
    shed = new_shed_id("bench-fp")
    window_s = minutes * 60.0
    warmup = warmup_s if warmup_s is not None else min(30.0, max(3.0, window_s / 10))
    wall0 = time.monotonic()
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="ebshed-bench-") as tmp:
        config_path = Path(tmp) / "shed.toml"
        config = shed_config(shed, sockets, broker, tmp)
        if telemetry_url is not None:
            config["telemetry"] = {"url": telemetry_url, "interval_s": telemetry_interval_s}
        config_path.write_text(to_toml(config), "utf-8")
        http = f"127.0.0.1:{_free_port()}"
        api = f"http://{http}"
        log_path = Path(tmp) / "controller.log"
        parent, child = ctx.Pipe()
        devices = ctx.Process(
            target=_devices_main, args=(host, port, shed, sockets, child), daemon=True
        )
        devices.start()
        child.close()
        controller: subprocess.Popen[bytes] | None = None
        device_counts: tuple[Any, ...] = ()
        try:
            if not parent.poll(30):
                raise TimeoutError("the device process did not start")
            parent.recv()
            controller = _start_controller(config_path, http, log_path)
            sampler = _Sampler(controller.pid)
            sampler.sample()
            _wait_http(api, controller, 60.0)
            ports = list(range(1, sockets + 1))[: round(sockets * session_share)]
            sessions = _start_sessions(api, ports, 30.0)
            sampler.run_for(warmup, every_s, controller)
            start = len(sampler.rows)
            before = httpx.get(f"{api}/status", timeout=10).json()
            sampler.run_for(window_s, every_s, controller)
            window = sampler.rows[start:]
            after = httpx.get(f"{api}/status", timeout=10).json()
            open_sessions = len(httpx.get(f"{api}/sessions?open_only=true", timeout=10).json())
            exported = _telemetry_counts(api) if telemetry_url is not None else None
        finally:
            exit_code = _stop_controller(controller) if controller is not None else None
            if devices.is_alive():
                parent.send(("stop",))
                if parent.poll(10):
                    device_counts = parent.recv()
            devices.join(10)
            if devices.is_alive():
                devices.terminate()
                devices.join(5)
            parent.close()
            with contextlib.suppress(OSError):
                raw = RawPublisher(host, port, f"{shed}-cleanup")
                raw.clear_retained(
                    retained_topics(shed, range(1, sockets + 1), board_layout(sockets))
                )
                raw.close()
            log_text = log_path.read_text("utf-8", "replace") if log_path.exists() else ""
    rss_peak = max(r for _, r, _ in sampler.rows) / MB
    rss_window = [r / MB for _, r, _ in window]
    cpu = _cpu_percent(window)
    samples_handled = after["counters"]["samples"] - before["counters"]["samples"]
    elapsed = window[-1][0] - window[0][0] if len(window) > 1 else 0.0
    charging = sum(1 for p in after["ports"] if p["state"] == "charging")
    cpu_met, rss_met = cpu < CPU_TARGET_PERCENT, rss_peak < RSS_TARGET_MB
    return result(
        "footprint",
        round(rss_peak, 1),
        "MB",
        f"RSS < {RSS_TARGET_MB:g} MB and CPU < {CPU_TARGET_PERCENT:g} % of one core",
        cpu_met and rss_met,
        cpu_percent=round(cpu, 2),
        details={
            "shed": shed,
            "sockets": sockets,
            "boards": len(board_layout(sockets)),
            "minutes_measured": round(elapsed / 60, 2),
            "warmup_s": warmup,
            "rss_peak_mb": round(rss_peak, 1),
            "rss_target_mb": RSS_TARGET_MB,
            "rss_met": rss_met,
            "rss_window_start_mb": round(rss_window[0], 1) if rss_window else None,
            "rss_window_end_mb": round(rss_window[-1], 1) if rss_window else None,
            "rss_by_minute_mb": _by_minute(window),
            "cpu_percent_of_one_core": round(cpu, 2),
            "cpu_worst_minute_percent": _rounded(_worst_minute(window)),
            "cpu_target_percent": CPU_TARGET_PERCENT,
            "cpu_met": cpu_met,
            "samples_per_s_handled": round(samples_handled / elapsed, 1) if elapsed else 0.0,
            "samples_discarded": after["counters"]["discarded"],
            "sessions": sessions,
            "sessions_open_at_end": open_sessions,
            "sockets_charging_at_end": charging,
            "alarms_at_end": [a["kind"] for a in after["alarms"]],
            "devices_published_commands": list(device_counts[1:]),
            "controller_exit_code": exit_code,
            "controller_log_lines": log_text.count("\n"),
            "controller_log_tail": log_text[-600:],
            "telemetry": exported,
            "cpus": psutil.cpu_count(),
            "wall_s": round(time.monotonic() - wall0, 1),
        },
    )
