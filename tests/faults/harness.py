"""Real processes for the fault suite: a broker, `ebshed controller run`, the central API.

`FaultShed` puts together a private Mosquitto (restartable), the simulated
boards of `tests.faults.sim` and the controller as a separate process with a
generated config of short thresholds (lease 4 s, renew every 1 s, board
offline after 6 s of silence), so each scenario takes seconds. The controller
can be killed with SIGKILL at any moment, or started with crash points armed
(`EBSHED_CRASH_AT`, see controller/faults.py), and restarted on the same
database.

Every scenario ends with `tests.faults.invariants.check`.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.brokers import PrivateMosquitto, free_port
from tests.faults.sim import SimShed

T = TypeVar("T")

EBSHED = str(Path(sys.executable).parent / "ebshed")
UVICORN = str(Path(sys.executable).parent / "uvicorn")
ADMIN_TOKEN = "fault-suite-admin-token-0123456789"
CARD = "04A1B2C3"
CARD_BALANCE_FEN = 1_000_000

# Short thresholds: every rule that a fault meets takes seconds, not minutes.
RULES: dict[str, Any] = {
    "lease_s": 4,
    "renew_every_s": 1,
    "heartbeat_s": 2,
    "offline_after_heartbeats": 3,
    "offline_settle_s": 60,  # a silent board's sessions wait this long for its register
    "socket_max_w": 4000,  # the suite's chargers draw 2.5-3.2 kW (Wh accrue in seconds)
    "budget_w": 200_000,
    "authorize_timeout_s": 30,
    "state_publish_every_s": 5,
}
# One tier up to the socket limit, 1 fen per started minute at 60 fen/h.
TARIFF: dict[str, Any] = {
    "id": "fault",
    "version": 1,
    "name": "fault suite",
    "kind": "power_tier",
    "tiers": [{"max_w": 4000, "fen_per_hour": "60"}],
}


def scale() -> float:
    """EBSHED_FAULT_SCALE multiplies the scenarios' counts (1: the CI figures)."""
    try:
        value = float(os.environ.get("EBSHED_FAULT_SCALE", "1"))
    except ValueError as err:
        raise ValueError("EBSHED_FAULT_SCALE must be a number") from err
    if value <= 0:
        raise ValueError("EBSHED_FAULT_SCALE must be positive")
    return value


def scaled(n: int, minimum: int = 1) -> int:
    return max(minimum, round(n * scale()))


def wait_for(
    predicate: Callable[[], T | None], timeout: float, what: str, step: float = 0.05
) -> T:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (httpx.HTTPError, sqlite3.Error, OSError) as err:
            last_error = err
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last error: {last_error!r})")
        time.sleep(step)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return str(value)


@dataclass
class Central:
    """`uvicorn --factory api.main:create_app_from_env` on SQLite, stoppable and restartable."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.workdir / "central.sqlite"

    def start(self) -> None:
        env = {
            **os.environ,
            "EBSHED_API_DATABASE_URL": f"sqlite:///{self.db_path}",
            "EBSHED_API_ADMIN_TOKEN": ADMIN_TOKEN,
            "EBSHED_API_PAY_WORKERS": "false",
        }
        log = open(self.workdir / "central.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(
            [UVICORN, "--factory", "api.main:create_app_from_env", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        log.close()
        wait_for(lambda: httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200,
                 30, "central API up")  # fmt: skip

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def register(self, shed: str, ports: list[int]) -> str:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=self.url, headers=admin, timeout=10) as http:
            r = http.post("/api/v1/admin/compounds", json={"id": "faults", "name": "故障小区"})
            assert r.status_code == 201, r.text
            r = http.post("/api/v1/admin/sheds", json={
                "id": shed, "name": "故障车棚", "compound_id": "faults", "ports": ports})
            assert r.status_code == 201, r.text
            self.token = str(r.json()["token"])
        return self.token

    def query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        db.row_factory = sqlite3.Row
        try:
            return list(db.execute(sql, args))
        finally:
            db.close()


class FaultShed:
    """A private broker, simulated boards and the controller process of one shed."""

    def __init__(
        self,
        workdir: Path,
        *,
        boards: dict[str, list[int]] | None = None,
        rules: dict[str, Any] | None = None,
        bays: dict[int, int] | None = None,
        wh_start: dict[int, int] | None = None,
        central: Central | None = None,
        seed: int = 1,
    ) -> None:
        self.workdir = workdir
        self.shed = f"f-{uuid.uuid4().hex[:10]}"
        self.boards = boards or {"b1": list(range(1, 7)), "b2": list(range(7, 13))}
        self.ports = sorted(p for ports in self.boards.values() for p in ports)
        self.rules = {**RULES, **(rules or {})}
        self.bays = bays or {}
        self.broker = PrivateMosquitto()
        self.central = central
        self.api_port = free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.config = workdir / "shed.toml"
        self.data_dir = workdir / "data"
        self.log_path = workdir / "controller.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0
        self.crashes: list[str] = []  # crash points that ended the process
        self.unexpected_exits: list[str] = []  # the controller ended by itself
        self._expected_end = False  # the test ended the running process (kill, stop, crash)
        self.starts = 0
        self.started_ids: set[str] = set()  # sessions whose start was answered 201
        self.last_refusal = ""  # the local API's answer to the last start it refused
        self.http = httpx.Client(timeout=10)
        self._seed = seed
        self._wh_start = wh_start
        self.sim: SimShed | None = None

    # ---------------------------------------------------------------- set-up

    def write_config(self) -> None:
        lines = [
            "[shed]", f'id = "{self.shed}"', f'data_dir = "{self.data_dir}"',
            "[mqtt]", 'host = "127.0.0.1"', f"port = {self.broker.port}", "keepalive = 5",
        ]  # fmt: skip
        if self.central is not None:
            url, token = self.central.url, self.central.token
        else:
            # Nothing listens there: the outbox keeps every record, for the check to read.
            url, token = f"http://127.0.0.1:{free_port()}", "no-central-token"
        lines += ["[central]", f'url = "{url}"', f'token = "{token}"', "poll_wait_s = 1",
                  "live_every_s = 0"]  # fmt: skip
        for board_id, ports in self.boards.items():
            lines += ["[[boards]]", f'id = "{board_id}"', f"ports = {_toml_value(ports)}"]
        if self.bays:
            lines.append("[bays]")
            lines += [f'"{bay}" = {port}' for bay, port in self.bays.items()]
        lines.append("[rules]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in self.rules.items()]
        lines.append("[tariff]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in TARIFF.items()]
        lines += ["[[cards]]", f'uid = "{CARD}"', f"balance_fen = {CARD_BALANCE_FEN}"]
        self.config.write_text("\n".join(lines) + "\n", "utf-8")

    def __enter__(self) -> FaultShed:
        self.broker.start()
        if self.central is not None and not self.central.token:
            self.central.register(self.shed, self.ports)
        self.write_config()
        self.sim = SimShed(self.shed, self.boards, "127.0.0.1", self.broker.port,
                           seed=self._seed, wh_start=self._wh_start,
                           bays=sorted(self.bays))  # fmt: skip
        self.sim.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            if self.sim is not None:
                self.sim.close()
        finally:
            self.http.close()
            self.broker.stop()

    # ---------------------------------------------------------------- controller

    def start_controller(self, crash_at: str | None = None, wait: bool = True) -> None:
        assert self.proc is None or self.proc.poll() is not None, "controller already running"
        self.note_exit()
        self._expected_end = False
        env = {**os.environ}
        env.pop("EBSHED_CRASH_AT", None)
        if crash_at:
            env["EBSHED_CRASH_AT"] = crash_at
        with open(self.log_path, "ab") as log:
            log.write(f"---- start {self.starts + 1} crash_at={crash_at}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [EBSHED, "controller", "run", "--config", str(self.config),
                 "--http", f"127.0.0.1:{self.api_port}"],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        self.starts += 1
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        """The local API answers and no socket waits for its board any more."""

        def ready() -> dict[str, Any] | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"controller exited with {self.proc.returncode}: "
                                     f"{self.log_tail()}")  # fmt: skip
            status = self.status()
            # Offline: a restored session waits for its board; no temperature: no reading yet.
            if any(p["state"] == "offline" or p["temp_c"] is None for p in status["ports"]):
                return None
            return status

        return wait_for(ready, timeout, "controller ready")

    def ready(self) -> bool:
        """The local API answers and every socket has reported (no waiting session)."""
        try:
            ports = self.status()["ports"]
        except httpx.HTTPError:
            return False
        return not any(p["state"] == "offline" or p["temp_c"] is None for p in ports)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush (a crash, a power cut of the controller)."""
        assert self.proc is not None
        self.note_exit()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.kills += 1
        self._expected_end = True

    def stop_controller(self) -> None:
        assert self.proc is not None
        self._expected_end = True
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(20)

    def crashed(self, point: str) -> None:
        """The process ended at crash point `point`, as the test armed it."""
        self.crashes.append(point)
        self._expected_end = True

    def note_exit(self) -> None:
        """Record an exit nobody asked for (a supervised task that died, a crash)."""
        proc = self.proc
        if proc is not None and not self._expected_end and proc.poll() is not None:
            self.unexpected_exits.append(f"exit {proc.returncode}: {self.log_tail(3)}")
            self._expected_end = True

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ---------------------------------------------------------------- local API

    def status(self) -> dict[str, Any]:
        r = self.http.get(f"{self.api}/status", timeout=5)
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    def start_session(
        self, port: int, *, kind: str = "order", prepaid_fen: int = 500
    ) -> dict[str, Any] | None:
        """POST /ports/{port}/start; the session, or None if refused or the process died."""
        body: dict[str, Any] = {"kind": kind, "prepaid_fen": prepaid_fen, "mode": "amount"}
        if kind == "card":
            body["ref"] = CARD
        try:
            r = self.http.post(f"{self.api}/ports/{port}/start", json=body, timeout=5)
        except httpx.HTTPError:
            return None
        if r.status_code != 201:
            self.last_refusal = f"{r.status_code} {r.text[:200]}"
            return None
        session: dict[str, Any] = r.json()
        self.started_ids.add(str(session["id"]))
        return session

    def stop_session(self, port: int) -> bool:
        try:
            r = self.http.post(f"{self.api}/ports/{port}/stop", json={"reason": "operator"},
                               timeout=5)  # fmt: skip
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    def metrics(self) -> dict[str, float]:
        text = self.http.get(f"{self.api}/metrics", timeout=5).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    # ---------------------------------------------------------------- plumbing

    @property
    def sim_(self) -> SimShed:
        assert self.sim is not None
        return self.sim

    @property
    def db_path(self) -> Path:
        return self.data_dir / f"{self.shed}.sqlite"

    def query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        db.row_factory = sqlite3.Row
        try:
            return list(db.execute(sql, args))
        finally:
            db.close()

    def open_session_ports(self) -> set[int]:
        return {int(r["port"]) for r in self.query(
            "SELECT port FROM sessions WHERE ended_ms IS NULL")}  # fmt: skip

    def plug_all(self, ports: list[int] | None = None) -> None:
        for port in ports or self.ports:
            self.sim_.plug(port)

    def settle(self, timeout: float | None = None) -> None:
        """End every session the running controller has and wait until they are closed.

        Used before the invariant check: a session still open at the end would
        say nothing about the close. Waits first for restored sessions to meet
        their boards (the controller must be running)."""
        limit = timeout or (self.rules["lease_s"] + self.rules["heartbeat_s"]
                            * self.rules["offline_after_heartbeats"] + 20)  # fmt: skip
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            status = self.status()
            busy = [p["port"] for p in status["ports"] if p["session"] is not None]
            if not busy and not self.open_session_ports():
                return
            for port in busy:
                self.stop_session(port)
            time.sleep(0.3)
        raise AssertionError(
            f"sessions still open after {limit} s: ports {sorted(self.open_session_ports())}; "
            f"{self.log_tail(10)}"
        )


@contextmanager
def central_api(workdir: Path) -> Iterator[Central]:
    c = Central(workdir)
    c.start()
    try:
        yield c
    finally:
        c.stop()
