"""From the payment notification to the socket's relay: `ebshed bench pay-start`.

A resident pays; the socket must power on within a second (docs/scan-to-pay.md).
This measures that path as deployed, each part in its own process:

- the central API under uvicorn (`--workers N`, SQLite in a temporary folder
  or `--database-url`), configured from the provider simulator's credentials;
- the shed's controller (`ebshed controller run`), registered with the API,
  long-polling it for commands, with its boards on a real Mosquitto;
- in this process: the payment provider simulator (real RSA signatures and
  AES-GCM) and the socket boards (paho-mqtt, answering the contract's `cmd`).

For each order: the resident's order is made through the API, then the
provider is told the resident paid; the clock starts when the provider sends
its notification, and stops when the board receives the `on` command for the
socket. Both ends are in this process (one monotonic clock). Every socket is
paid for once, so no round waits for another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import (
    TOPIC_ROOT,
    PortLoad,
    ack_payload,
    new_shed_id,
    now_ms,
    parse_broker,
    result,
    shed_config,
    to_toml,
)
from bench.footprint import _free_port, _start_controller, _stop_controller, _wait_http
from simulators.payment_provider import PaymentProviderSimulator, write_credentials

TARGET_MS = 1000.0
ADMIN_TOKEN = "bench-pay-start-admin-token"
PHONE = "13800138000"


class Boards:
    """The shed's socket boards: telemetry every second, `cmd` answered, the
    moment each `on` arrives noted (monotonic seconds)."""

    def __init__(self, host: str, port: int, shed: str, sockets: int) -> None:
        self.load = PortLoad(shed, range(1, sockets + 1))
        self.on_at: dict[int, float] = {}
        self.ready = threading.Event()
        self._stop = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{shed}-boards")
        self.client.on_message = self._on_cmd
        self.client.on_subscribe = lambda *_a: self.ready.set()
        self.client.connect(host, port, 30)
        self.client.loop_start()
        self.client.subscribe(f"{TOPIC_ROOT}/{shed}/port/+/cmd", 1)
        self._thread = threading.Thread(target=self._telemetry, name="bench-boards", daemon=True)
        self._thread.start()

    def _on_cmd(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        at = time.monotonic()
        payload = ack_payload(msg.payload)
        if payload is None:
            return
        port = int(msg.topic.split("/")[-2])
        on = b'"relay":true' in payload
        if on and json.loads(msg.payload).get("op") == "on":
            self.on_at.setdefault(port, at)
        self.load.relay[port] = on
        client.publish(f"{msg.topic}/ack", payload, qos=1)

    def _telemetry(self) -> None:
        while not self._stop.wait(1.0):
            ts = now_ms()
            for p in self.load.ports:
                self.client.publish(self.load.topic[p].decode(), self.load.sample(p, ts, 1.0))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()


def _start_api(port: int, workers: int, env: dict[str, str],
               log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app_from_env",
           "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
           "--log-level", "warning"]
    with log.open("wb") as out:
        return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT)


async def _until(check: Any, within_s: float, what: str) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            got = await check()
            if got:
                return got
        await asyncio.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


async def _measure(orders: int, sockets: int, broker: str, workers: int,
                   database_url: str | None, tmp: Path) -> dict[str, Any]:
    host, mqtt_port = parse_broker(broker)
    shed = new_shed_id("bench-pay")
    api_port = _free_port()
    api = f"http://127.0.0.1:{api_port}"
    procs: list[subprocess.Popen[bytes]] = []
    boards: Boards | None = None
    sim = PaymentProviderSimulator(seed=7)
    await sim.start()
    try:
        write_credentials(sim, tmp / "pay")
        env = {
            "EBSHED_API_DATABASE_URL": database_url or f"sqlite:///{tmp / 'central.sqlite'}",
            "EBSHED_API_ADMIN_TOKEN": ADMIN_TOKEN,
            "EBSHED_API_PUBLIC_BASE_URL": api,
            "EBSHED_API_PAY_CREDENTIALS_DIR": str(tmp / "pay"),
            # One bench phone pays for every socket in a row, each paid before the next.
            "EBSHED_API_ORDERS_PER_PHONE_PER_MIN": "1000",
            "EBSHED_API_ORDERS_PER_ADDRESS_PER_MIN": "1000",
        }
        procs.append(_start_api(api_port, workers, env, tmp / "api.log"))
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(base_url=api, timeout=10) as http:
            await _until(lambda: _ok(http.get("/healthz")), 60, "the API")
            await http.post("/api/v1/admin/compounds", json={"id": "bench", "name": "bench"},
                            headers=admin)
            made = await http.post("/api/v1/admin/sheds", headers=admin, json={
                "id": shed, "name": "bench", "compound_id": "bench",
                "ports": list(range(1, sockets + 1))})
            made.raise_for_status()
            config = shed_config(shed, sockets, broker, str(tmp / "shed"))
            config["central"] = {"url": api, "token": made.json()["token"]}
            (tmp / "shed.toml").write_text(to_toml(config), "utf-8")
            boards = on_air = await asyncio.to_thread(Boards, host, mqtt_port, shed, sockets)
            local = f"127.0.0.1:{_free_port()}"
            procs.append(_start_controller(tmp / "shed.toml", local, tmp / "controller.log"))
            await asyncio.to_thread(_wait_http, f"http://{local}", procs[-1], 60)

            async def all_free() -> bool:
                view = (await http.get(f"/api/v1/public/sheds/{shed}")).json()
                return bool(view.get("free_sockets") == sockets)

            await _until(all_free, 60, "every socket reported free to the API")
            latencies: list[float] = []
            for port in range(1, orders + 1):
                order = await http.post("/api/v1/orders", json={
                    "shed_id": shed, "port": port, "mode": "amount", "amount_fen": 100,
                    "phone": PHONE})
                order.raise_for_status()
                sent = time.monotonic()
                sim.simulate_payment(order.json()["out_trade_no"])  # the notification goes
                on_at = await _until(lambda p=port: _on(on_air, p), 10, f"socket {port} on")
                latencies.append((on_at - sent) * 1000)
                await sim.wait_idle()
        return _summary(latencies, sockets, workers, database_url)
    finally:
        for proc in procs:
            _stop_controller(proc)
        if boards is not None:
            boards.close()
        await sim.stop()


async def _ok(response: Any) -> bool:
    return bool((await response).status_code == 200)


async def _on(boards: Boards, port: int) -> float | None:
    return boards.on_at.get(port)


def _summary(latencies: list[float], sockets: int, workers: int,
             database_url: str | None) -> dict[str, Any]:
    ordered = sorted(latencies)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    worst = ordered[-1]
    return result(
        "pay_start_latency",
        round(worst, 1),
        "ms (worst, notification sent -> relay command at the board)",
        f"every socket on within {TARGET_MS:.0f} ms of the notification",
        worst < TARGET_MS,
        details={
            "orders": len(latencies),
            "median_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(p95, 1),
            "max_ms": round(worst, 1),
            "min_ms": round(ordered[0], 1),
            "latencies_ms": [round(x, 1) for x in latencies],
            "sockets": sockets,
            "api_workers": workers,
            "database": "postgresql" if database_url and "postgres" in database_url
            else "sqlite",
            "load_avg": os.getloadavg(),
        },
    )


def run(orders: int = 20, sockets: int = 24, broker: str = "127.0.0.1:1883", workers: int = 1,
        database_url: str | None = None) -> dict[str, Any]:
    if not 1 <= orders <= sockets:
        raise ValueError("orders must be 1..sockets (each socket is paid for once)")
    with tempfile.TemporaryDirectory(prefix="ebshed-bench-pay-") as tmp:
        return asyncio.run(_measure(orders, sockets, broker, workers, database_url, Path(tmp)))
