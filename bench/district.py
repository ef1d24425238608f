"""District scale: `ebshed bench district`.

One central API as deployed (uvicorn, `--workers 2`, PostgreSQL in a
throwaway database) serves N simulated sheds at once. The sheds are light
uplink clients (asyncio + httpx, split over `clients` processes), not
controllers; each speaks the uplink contract (docs/uplink-contract.md):

- registered by the admin API (its own token), in compounds of 50;
- a live snapshot of its 24 sockets every 5 s (`POST /live`);
- a command long poll, always open (`GET /commands?after=&wait=25`); each
  command received is answered with its result;
- an evening's session records, batched every 10 s (`POST /uplink`): 60 %
  of the sockets charging, a checkpoint of each session every 60 s, sessions
  ending and starting at an evening rate, the socket records that go with it.

Staff commands (`disable`/`enable` of a random socket) go to random sheds
through the admin API at `commands_per_s`. Figures, per shed count:

- command created (the API's `created_ms`) -> the long poll of its shed has
  it, p50/p99/max, and commands never delivered. Target p99 under 1 s;
- the slowest request of any kind but the long poll (and how far a long poll
  that found nothing overran its wait). Target: none over 2 s;
- CPU (per cent of one core, all API processes) and peak resident memory.

`holds` is the largest shed count that met both targets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.common import result, throwaway_database

ADMIN_TOKEN = "bench-district-admin-token"
PORTS = 24
LIVE_EVERY_S = 5.0
UPLINK_EVERY_S = 10.0
CHECKPOINT_S = 60.0
POLL_WAIT_S = 25
BUSY_SHARE = 0.6  # sockets charging on an evening
SESSION_S = 3 * 3600.0  # an evening charge lasts about three hours
DELIVERY_TARGET_MS = 1000.0
REQUEST_TARGET_MS = 2000.0
SHEDS_PER_COMPOUND = 50


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


# --------------------------------------------------------------------------- one shed


class _Stats:
    def __init__(self) -> None:
        self.durations: dict[str, list[float]] = {"live": [], "uplink": [], "result": []}
        self.poll_overrun_s = 0.0
        self.polls = 0
        self.errors: dict[str, int] = {}
        self.records = {"applied": 0, "duplicates": 0, "rejected": 0}
        self.rejections: dict[str, int] = {}
        self.received: list[tuple[str, int]] = []  # (command id, wall ms it arrived)
        self.lag_s = 0.0  # the client's own event loop, worst lateness of a 100 ms tick

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


class _Shed:
    """One simulated shed: live snapshots, the command long poll, session records."""

    def __init__(self, shed_id: str, token: str, rng: random.Random, stats: _Stats) -> None:
        self.id = shed_id
        self.headers = {"Authorization": f"Bearer {token}"}
        self.rng = rng
        self.stats = stats
        self.after = 0
        self.versions: dict[tuple[str, str], int] = {}
        self.pending: list[dict[str, Any]] = []
        self.sessions: dict[int, dict[str, Any]] = {}  # port -> session data
        self.next_checkpoint: dict[int, float] = {}
        self.n = 0
        now = wall_ms()
        for port in range(1, PORTS + 1):
            if rng.random() < BUSY_SHARE:
                self._open(port, now - rng.randrange(60_000, 7_200_000), time.monotonic())
        self.pending.clear()  # the evening so far was sent before the bench began

    # ------------------------------------------------------------- records

    def _record(self, kind: str, key: str, data: dict[str, Any]) -> None:
        version = self.versions.get((kind, key), 0) + 1
        self.versions[(kind, key)] = version
        self.n += 1
        self.pending.append(
            {
                "id": f"{self.id}-r{self.n}",
                "kind": kind,
                "key": key,
                "version": version,
                "ts": wall_ms(),
                "data": data,
            }
        )

    def _open(self, port: int, started_ms: int, now: float) -> None:
        self.n += 1
        sid = f"{self.id}-s{self.n}"
        session = {
            "id": sid,
            "port": port,
            "auth": {"kind": "card", "ref": f"C{port:04d}"},
            "started_ms": started_ms,
            "first_wh": 1000,
            "last_wh": 1000,
            "energy_wh": 0,
            "peak_w": 0.0,
            "billed_fen": 0,
            "refund_fen": 0,
            "flags": [],
        }
        self.sessions[port] = session
        self.next_checkpoint[port] = now + self.rng.uniform(0, CHECKPOINT_S)
        self._record("session", sid, dict(session))
        self._record(
            "socket",
            str(port),
            {"port": port, "state": "charging", "since": started_ms, "session": sid},
        )

    def _close(self, port: int) -> None:
        session = self.sessions.pop(port)
        self.next_checkpoint.pop(port, None)
        ended = wall_ms()
        self._record("session", session["id"], {**session, "ended_ms": ended, "end_reason": "full"})
        self._record("socket", str(port), {"port": port, "state": "idle", "since": ended})

    def evening(self, now: float, dt_s: float) -> None:
        """Checkpoints that are due; sessions that end and begin in `dt_s`."""
        for port, due in list(self.next_checkpoint.items()):
            if due <= now:
                s = self.sessions[port]
                s["energy_wh"] += self.rng.randrange(2, 6)
                s["last_wh"] = 1000 + s["energy_wh"]
                s["peak_w"] = max(s["peak_w"], round(self.rng.uniform(150, 260), 1))
                self.next_checkpoint[port] = due + CHECKPOINT_S
                self._record("session", s["id"], dict(s))
        for port in range(1, PORTS + 1):
            if port in self.sessions:
                if self.rng.random() < dt_s / SESSION_S:
                    self._close(port)
            elif self.rng.random() < dt_s * BUSY_SHARE / SESSION_S / (1 - BUSY_SHARE):
                self._open(port, wall_ms(), now)

    def snapshot(self) -> dict[str, Any]:
        ports = []
        for port in range(1, PORTS + 1):
            s = self.sessions.get(port)
            ports.append(
                {
                    "port": port,
                    "state": "charging" if s else "idle",
                    "since": s["started_ms"] if s else 0,
                    "w": round(self.rng.uniform(150, 260), 1) if s else 0.0,
                    "temp_c": 31.0,
                    "relay": s is not None,
                    "session": s["id"] if s else None,
                    "session_wh": s["energy_wh"] if s else 0,
                    "session_started_ms": s["started_ms"] if s else None,
                    "session_cost_fen": 0,
                    "disabled_reason": None,
                }
            )
        return {"taken_ms": wall_ms(), "ports": ports, "bays": []}

    # ------------------------------------------------------------- loops

    async def _post(
        self, client: httpx.AsyncClient, what: str, url: str, body: dict[str, Any]
    ) -> dict[str, Any] | None:
        t0 = time.monotonic()
        try:
            response = await client.post(url, json=body, headers=self.headers)
        except httpx.HTTPError as err:
            self.stats.error(f"{what}:{type(err).__name__}")
            return None
        finally:
            self.stats.durations[what].append(time.monotonic() - t0)
        if response.status_code != 200:
            self.stats.error(f"{what}:{response.status_code}")
            return None
        answer: dict[str, Any] = response.json()
        return answer

    async def live(self, client: httpx.AsyncClient, base: str, until: float) -> None:
        await asyncio.sleep(self.rng.uniform(0, LIVE_EVERY_S))
        while time.monotonic() < until:
            started = time.monotonic()
            await self._post(client, "live", f"{base}/api/v1/sheds/{self.id}/live", self.snapshot())
            await asyncio.sleep(max(0.0, LIVE_EVERY_S - (time.monotonic() - started)))

    async def uplink(self, client: httpx.AsyncClient, base: str, until: float) -> None:
        await asyncio.sleep(self.rng.uniform(0, UPLINK_EVERY_S))
        last = time.monotonic()
        while time.monotonic() < until:
            now = time.monotonic()
            self.evening(now, now - last)
            last = now
            batch, self.pending = self.pending[:500], self.pending[500:]
            if batch:
                answer = await self._post(
                    client, "uplink", f"{base}/api/v1/sheds/{self.id}/uplink", {"records": batch}
                )
                if answer is None:
                    self.pending = batch + self.pending  # retried with the next batch
                else:
                    for key in ("applied", "duplicates", "rejected"):
                        self.stats.records[key] += len(answer.get(key, []))
                    for r in answer.get("rejected", []):
                        code = str(r.get("code"))
                        self.stats.rejections[code] = self.stats.rejections.get(code, 0) + 1
            await asyncio.sleep(max(0.0, UPLINK_EVERY_S - (time.monotonic() - now)))

    async def commands(self, client: httpx.AsyncClient, base: str, until: float) -> None:
        url = f"{base}/api/v1/sheds/{self.id}/commands"
        while time.monotonic() < until:
            wait = min(POLL_WAIT_S, max(1, int(until - time.monotonic())))
            t0 = time.monotonic()
            try:
                response = await client.get(
                    url, params={"after": self.after, "wait": wait}, headers=self.headers
                )
            except httpx.HTTPError as err:
                self.stats.error(f"poll:{type(err).__name__}")
                await asyncio.sleep(1)
                continue
            at = wall_ms()
            took = time.monotonic() - t0
            self.stats.polls += 1
            if response.status_code != 200:
                self.stats.error(f"poll:{response.status_code}")
                await asyncio.sleep(1)
                continue
            found = response.json()["commands"]
            if not found:
                self.stats.poll_overrun_s = max(self.stats.poll_overrun_s, took - wait)
            for c in found:
                self.stats.received.append((c["id"], at))
                self.after = max(self.after, c["seq"])
                await self._post(
                    client,
                    "result",
                    f"{url}/{c['id']}/result",
                    {"ok": True, "code": None, "message": None, "data": None},
                )


async def _serve(spec: dict[str, Any]) -> dict[str, Any]:
    stats = _Stats()
    rng = random.Random(spec["seed"])
    sheds = [_Shed(sid, token, random.Random(rng.random()), stats) for sid, token in spec["sheds"]]
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx.Timeout(POLL_WAIT_S + 15.0)
    base = spec["base"]
    async with contextlib.AsyncExitStack() as stack:
        # A client (connection pool) per shed, as each shed is a controller of its own;
        # one pool shared by hundreds of sheds queues their requests in the client.
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(limits=limits, timeout=timeout))
            for _ in sheds
        ]
        until = time.monotonic() + spec["seconds"]
        tasks = [
            asyncio.create_task(loop(client, base, until))
            for shed, client in zip(sheds, clients, strict=True)
            for loop in (shed.live, shed.uplink, shed.commands)
        ]
        print("ready", flush=True)

        async def ticker() -> None:  # a late tick: the client, not the API, is slow
            while time.monotonic() < until:
                t0 = time.monotonic()
                await asyncio.sleep(0.1)
                stats.lag_s = max(stats.lag_s, time.monotonic() - t0 - 0.1)

        await asyncio.gather(*tasks, ticker())
    return {
        "durations": stats.durations,
        "poll_overrun_s": stats.poll_overrun_s,
        "polls": stats.polls,
        "errors": stats.errors,
        "records": stats.records,
        "rejections": stats.rejections,
        "received": stats.received,
        "lag_s": stats.lag_s,
    }


def serve_sheds() -> None:
    """A client process: the spec (JSON) on stdin, `ready`, then the figures (JSON) on stdout."""
    spec = json.loads(sys.stdin.readline())
    out = asyncio.run(_serve(spec))
    print(json.dumps(out), flush=True)


# --------------------------------------------------------------------------- the API


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_api(db_url: str, port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "EBSHED_API_DATABASE_URL": db_url,
        "EBSHED_API_ADMIN_TOKEN": ADMIN_TOKEN,
        "EBSHED_API_AUTO_MIGRATE": "true",
    }
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "api.main:create_app_from_env",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--timeout-keep-alive",
        "60",
    ]
    with log.open("wb") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def _start_client(spec: dict[str, Any]) -> subprocess.Popen[str]:
    code = "from bench.district import serve_sheds; serve_sheds()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(spec) + "\n")
    proc.stdin.close()
    return proc


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class _ApiUsage:
    """CPU seconds and resident memory of the uvicorn processes (the master and its workers)."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.cpu0 = self._cpu()
        self.t0 = time.monotonic()
        self.peak_rss = 0
        self.sample()

    def _procs(self) -> list[Any]:
        return [self.root, *self.root.children(recursive=True)]

    def _cpu(self) -> float:
        total = 0.0
        for p in self._procs():
            with contextlib.suppress(Exception):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def sample(self) -> None:
        rss = 0
        for p in self._procs():
            with contextlib.suppress(Exception):
                rss += p.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)

    def figures(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.t0
        return {
            "api_cpu_pct": round(100 * (self._cpu() - self.cpu0) / elapsed, 1),
            "api_rss_mb_peak": round(self.peak_rss / 2**20, 1),
            "api_processes": len(self._procs()),
        }


def _tail(log: Path) -> str:
    return log.read_text("utf-8", "replace")[-2000:]


async def _wait_healthy(
    client: httpx.AsyncClient, base: str, proc: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited: {_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get(f"{base}/healthz", timeout=2)).status_code == 200:
                return
        await asyncio.sleep(0.2)
    raise RuntimeError("the API did not come up in 60 s")


async def _register(client: httpx.AsyncClient, base: str, n: int) -> list[tuple[str, str]]:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for c in range((n + SHEDS_PER_COMPOUND - 1) // SHEDS_PER_COMPOUND):
        r = await client.post(
            f"{base}/api/v1/admin/compounds",
            json={"id": f"d{c:03d}", "name": f"小区 {c}"},
            headers=admin,
        )
        r.raise_for_status()
    gate = asyncio.Semaphore(8)

    async def one(i: int) -> tuple[str, str]:
        shed = {
            "id": f"d-shed-{i:05d}",
            "name": f"车棚 {i}",
            "compound_id": f"d{i // SHEDS_PER_COMPOUND:03d}",
            "ports": list(range(1, PORTS + 1)),
        }
        async with gate:
            r = await client.post(f"{base}/api/v1/admin/sheds", json=shed, headers=admin)
        r.raise_for_status()
        return f"d-shed-{i:05d}", str(r.json()["token"])

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def _step(
    n: int,
    *,
    seconds: float,
    workers: int,
    clients: int,
    commands_per_s: float,
    postgres: str,
    seed: int,
    tmp: Path,
) -> dict[str, Any]:
    rng = random.Random(seed)
    with throwaway_database("postgresql", postgres) as db_url:
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        log = tmp / f"api-{n}.log"
        api = _start_api(db_url, port, workers, log)
        procs: list[subprocess.Popen[str]] = []
        try:
            async with httpx.AsyncClient(timeout=30) as admin_client:
                await _wait_healthy(admin_client, base, api, log)
                sheds = await _register(admin_client, base, n)
                usage = _ApiUsage(api.pid)
                for k in range(clients):
                    spec = {
                        "base": base,
                        "sheds": sheds[k::clients],
                        "seed": seed + k,
                        "seconds": seconds,
                    }
                    procs.append(_start_client(spec))
                for proc in procs:
                    assert proc.stdout is not None
                    line = await asyncio.to_thread(proc.stdout.readline)
                    if line.strip() != "ready":
                        raise RuntimeError(f"a shed client did not start: {line!r}")
                sent = await _staff_commands(
                    admin_client, base, sheds, seconds, commands_per_s, rng, usage
                )
                outs = []
                for proc in procs:
                    assert proc.stdout is not None
                    line = await asyncio.to_thread(proc.stdout.readline)
                    outs.append(json.loads(line))
                usage.sample()
                api_figures = usage.figures()
        finally:
            for proc in procs:
                _stop(proc)
            _stop(api)
    return _figures(n, seconds, sent, outs, api_figures)


async def _staff_commands(
    client: httpx.AsyncClient,
    base: str,
    sheds: list[tuple[str, str]],
    seconds: float,
    per_s: float,
    rng: random.Random,
    usage: _ApiUsage,
) -> list[dict[str, Any]]:
    """Staff commands to random sheds from 5 s in until 5 s before the end."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    start = time.monotonic()
    await asyncio.sleep(min(5.0, seconds / 4))
    stop_at = start + seconds - min(5.0, seconds / 4)
    sent: list[dict[str, Any]] = []
    next_sample = time.monotonic()
    while time.monotonic() < stop_at:
        shed_id, _ = rng.choice(sheds)
        kind = rng.choice(("disable", "enable"))
        body = {"kind": kind, "data": {"port": rng.randrange(1, PORTS + 1), "reason": "bench"}}
        t0 = time.monotonic()
        try:
            r = await client.post(
                f"{base}/api/v1/admin/sheds/{shed_id}/commands", json=body, headers=admin
            )
            took = time.monotonic() - t0
            if r.status_code == 201:
                sent.append(
                    {"id": r.json()["id"], "created_ms": r.json()["created_ms"], "took_s": took}
                )
            else:
                sent.append({"id": None, "status": r.status_code, "took_s": took})
        except httpx.HTTPError as err:
            sent.append({"id": None, "status": type(err).__name__, "took_s": time.monotonic() - t0})
        if time.monotonic() >= next_sample:
            usage.sample()
            next_sample += 1.0
        await asyncio.sleep(rng.expovariate(per_s))
    await asyncio.sleep(max(0.0, start + seconds - time.monotonic()))
    return sent


def _figures(
    n: int,
    seconds: float,
    sent: list[dict[str, Any]],
    outs: list[dict[str, Any]],
    api: dict[str, Any],
) -> dict[str, Any]:
    received: dict[str, int] = {}
    for out in outs:
        for cid, at in out["received"]:
            received.setdefault(cid, at)
    made = [c for c in sent if c.get("id")]
    delivery = [received[c["id"]] - c["created_ms"] for c in made if c["id"] in received]
    durations: dict[str, list[float]] = {}
    for out in outs:
        for what, values in out["durations"].items():
            durations.setdefault(what, []).extend(values)
    durations["command"] = [c["took_s"] for c in sent]
    slowest = {what: round(max(v) * 1000, 1) if v else 0.0 for what, v in durations.items()}
    errors: dict[str, int] = {}
    records = {"applied": 0, "duplicates": 0, "rejected": 0}
    rejections: dict[str, int] = {}
    for out in outs:
        for k, v in out["errors"].items():
            errors[k] = errors.get(k, 0) + v
        for k, v in out["records"].items():
            records[k] += v
        for k, v in out["rejections"].items():
            rejections[k] = rejections.get(k, 0) + v
    errors["command_not_created"] = len(sent) - len(made)
    p99 = _pct(delivery, 0.99)
    slowest_ms = max(slowest.values(), default=0.0)
    overrun_ms = round(max(o["poll_overrun_s"] for o in outs) * 1000, 1)
    lost = len(made) - len(delivery)
    met = (
        bool(delivery)
        and p99 < DELIVERY_TARGET_MS
        and lost == 0
        and slowest_ms <= REQUEST_TARGET_MS
        and overrun_ms <= REQUEST_TARGET_MS
        and not any(errors.values())
    )
    requests = sum(len(v) for v in durations.values()) + sum(o["polls"] for o in outs)
    return {
        "sheds": n,
        "seconds": seconds,
        "commands": len(made),
        "delivered": len(delivery),
        "lost": lost,
        "delivery_ms_p50": _pct(delivery, 0.50),
        "delivery_ms_p99": p99,
        "delivery_ms_max": max(delivery, default=0),
        "delivery_ms_mean": round(statistics.fmean(delivery), 1) if delivery else None,
        "slowest_request_ms": slowest_ms,
        "slowest_by_kind_ms": slowest,
        "p99_by_kind_ms": {w: round(_pct(v, 0.99) * 1000, 1) for w, v in durations.items()},
        "poll_overrun_ms_max": overrun_ms,
        "client_lag_ms_max": round(max(o["lag_s"] for o in outs) * 1000, 1),
        "requests": requests,
        "requests_per_s": round(requests / seconds, 1),
        "records": records,
        "records_per_s": round(records["applied"] / seconds, 1),
        "rejections": rejections,
        "errors": {k: v for k, v in errors.items() if v},
        **api,
        "met": met,
    }


async def _run_all(sheds: Sequence[int], **kw: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ebshed-district-") as tmp:
        steps = [await _step(n, tmp=Path(tmp), **kw) for n in sheds]
    held = [s for s in steps if s["met"]]
    holds = max((s["sheds"] for s in held), default=0)
    head = max(steps, key=lambda s: s["sheds"])
    return result(
        "district",
        head["delivery_ms_p99"],
        "ms",
        f"command created -> at its shed p99 < {DELIVERY_TARGET_MS:.0f} ms, none lost; "
        f"no request over {REQUEST_TARGET_MS:.0f} ms",
        head["met"],
        headline=f"{head['sheds']} sheds, {kw['workers']} API workers, PostgreSQL",
        holds=holds,
        load_average=list(os.getloadavg()),
        steps=steps,
    )


def run(
    *,
    sheds: Sequence[int] = (500,),
    seconds: float = 60.0,
    workers: int = 2,
    clients: int = 2,
    commands_per_s: float = 2.0,
    postgres: str = "postgresql://postgres@127.0.0.1:5432/test",
    seed: int = 7,
) -> dict[str, Any]:
    """Each shed count in turn, on a fresh database and API; see the module docstring."""
    if not sheds or min(sheds) < 1:
        raise ValueError("need at least one shed")
    if seconds < 4 or workers < 1 or clients < 1 or commands_per_s <= 0:
        raise ValueError("seconds >= 4, workers >= 1, clients >= 1, commands_per_s > 0")
    return asyncio.run(
        _run_all(
            sheds,
            seconds=seconds,
            workers=workers,
            clients=clients,
            commands_per_s=commands_per_s,
            postgres=postgres,
            seed=seed,
        )
    )
