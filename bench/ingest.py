"""`ebshed bench ingest`: session records applied per second through the public
uplink API, against a bare batched insert of the same rows, same driver, same run.

- The central API runs under uvicorn (`--workers N`) on a throwaway PostgreSQL
  database; `sheds` sheds are registered through the admin API.
- Each shed's outbox is a stream of session records as the controller makes
  them (`controller/uplink_records.py`: the full tariff, the bill, the flags):
  every batch of `batch` records opens new sessions and closes those the
  previous batch opened, and a tenth of it (`duplicates`) are records the
  shed already sent (replays, as after a lost answer). A shed posts its
  batches one after the other, as the controller does; `clients` threads
  post for all sheds at once.
- The answers are checked (applied and duplicate ids exactly as expected) and
  so is the database afterwards: one row per session, each closed session in
  the rollups once.
- The baseline: the same rows (one per record) inserted with psycopg
  `executemany`, one transaction per batch, by as many threads, into a table
  with a primary key on (shed, session, version) that drops the duplicates
  (`ON CONFLICT DO NOTHING`): no HTTP, no validation, no versions, no rollups.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api.db import upgrade
from bench.common import result, throwaway_database

TARGET_RPS = 20_000
TARGET_RATIO = 0.5
ADMIN_TOKEN = "bench-ingest-admin-token"
DAY0_MS = 1_795_000_000_000  # 2026-11-18 local: any fixed day will do
TARIFF = {
    "id": "default",
    "version": 1,
    "name": "1元/4小时",
    "kind": "power_tier",
    "tiers": [{"max_w": 1100, "fen_per_hour": "25"}],
    "bands": [],
    "service_fen_per_kwh": "0",
    "start_fee_fen": 0,
    "free_minutes": 0,
    "tz_offset_minutes": 480,
}
COLUMNS = (
    "shed_id", "id", "port", "auth_kind", "auth_ref", "auth_mode", "prepaid_fen", "order_no",
    "tariff_id", "tariff_version", "tariff", "started_ms", "stop_ms", "ended_ms", "end_reason",
    "first_wh", "last_wh", "energy_wh", "peak_w", "billed_fen", "refund_fen", "flags", "bill",
    "data", "version", "reported_ms", "received_ms",
)  # fmt: skip


def run(
    *,
    records: int = 60_000,
    sheds: int = 20,
    batch: int = 500,
    duplicates: float = 0.10,
    workers: int = 2,
    clients: int = 4,
    postgres: str = "postgresql://postgres@127.0.0.1:5432/test",
    seed: int = 7,
) -> dict[str, Any]:
    if not 10 <= batch <= 500:
        raise ValueError("batch must be 10..500 (the uplink takes at most 500 records)")
    if not 0 <= duplicates < 0.5:
        raise ValueError("duplicates must be 0..0.5")
    per_shed = max(2, round(records / sheds / batch))
    outboxes = [
        _outbox(f"ingest-{n:03d}", per_shed, batch, duplicates, random.Random(seed + n))
        for n in range(sheds)
    ]
    with (
        throwaway_database("postgresql", postgres) as url,
        tempfile.TemporaryDirectory(prefix="ebshed-bench-ingest-") as tmp,
    ):
        upgrade(url)
        api = _Api(url, workers, Path(tmp) / "api.log")
        try:
            tokens = api.register([o.shed_id for o in outboxes])
            api_s = _post_all(api.port, outboxes, tokens, clients)
        finally:
            api.stop()
        checked = _check(url, outboxes)
        bare_s = _bare_insert(url, outboxes, clients)
    total = sum(o.records for o in outboxes)
    rps, bare_rps = total / api_s, total / bare_s
    ratio = rps / bare_rps
    return result(
        "ingest",
        round(rps),
        "records/s",
        f"at least {TARGET_RPS:,} session records/s through the uplink API and at least "
        f"{TARGET_RATIO}x a bare batched psycopg insert of the same rows "
        f"({duplicates:.0%} duplicates, PostgreSQL)",
        rps >= TARGET_RPS and ratio >= TARGET_RATIO,
        baseline=round(bare_rps),
        ratio=round(ratio, 3),
        backend="postgresql",
        records=total,
        duplicates=sum(o.duplicates for o in outboxes),
        sheds=sheds,
        batch=batch,
        workers=workers,
        clients=clients,
        api_s=round(api_s, 2),
        bare_s=round(bare_s, 2),
        **checked,
    )


# ------------------------------------------------------------------ the sheds' outboxes


@dataclass
class _Outbox:
    shed_id: str
    bodies: list[bytes] = field(default_factory=list)  # one uplink call each
    expected: list[tuple[set[str], list[str]]] = field(default_factory=list)  # applied, duplicates
    rows: list[list[tuple[Any, ...]]] = field(default_factory=list)  # the baseline's, per batch
    records: int = 0
    duplicates: int = 0
    sessions: int = 0
    closed: int = 0


def _outbox(
    shed_id: str, batches: int, size: int, duplicates: float, rng: random.Random
) -> _Outbox:
    """`batches` uplink bodies: each opens sessions, closes the previous batch's
    and replays records sent before (the first one replays its own)."""
    box = _Outbox(shed_id)
    replays = round(size * duplicates)
    fresh = size - replays
    open_now: list[dict[str, Any]] = []
    sent: list[dict[str, Any]] = []
    for b in range(batches):
        new: list[dict[str, Any]] = []
        closing = open_now[: fresh // 2]
        for session in closing:
            new.append(_record(shed_id, session, closed=True, rng=rng))
        open_now = []
        for _ in range(fresh - len(new) if b < batches - 1 else 0):
            box.sessions += 1
            session = _session(box.sessions, rng)
            open_now.append(session)
            new.append(_record(shed_id, session, closed=False, rng=rng))
        box.closed += len(closing)
        pool = sent or new
        again = [rng.choice(pool) for _ in range(replays if b < batches - 1 else 0)]
        batch_records = new + again
        rng.shuffle(batch_records)
        box.expected.append(({r["id"] for r in new}, sorted(r["id"] for r in again)))
        box.bodies.append(json.dumps({"records": batch_records}).encode())
        box.rows.append([_row(shed_id, r) for r in batch_records])
        box.records += len(batch_records)
        box.duplicates += len(again)
        sent.extend(new)
    return box


def _session(n: int, rng: random.Random) -> dict[str, Any]:
    started = DAY0_MS + n * 20_000 + rng.randrange(60_000)
    return {
        "id": f"s{n:07d}-{rng.randrange(1 << 30):08x}",
        "port": 1 + n % 33,
        "started_ms": started,
        "minutes": rng.randrange(30, 12 * 60),
        "energy_wh": rng.randrange(50, 1300),
        "card": f"{rng.randrange(1 << 32):08X}",
    }


def _record(shed_id: str, s: dict[str, Any], *, closed: bool, rng: random.Random) -> dict[str, Any]:
    ended = s["started_ms"] + s["minutes"] * 60_000 if closed else None
    hours = -(-s["minutes"] // 60)
    billed = 25 * hours if closed else 0
    data = {
        "id": s["id"],
        "port": s["port"],
        "auth": {"kind": "card", "ref": s["card"], "prepaid_fen": None, "mode": "until_full"},
        "tariff": TARIFF,
        "started_ms": s["started_ms"],
        "stop_ms": ended,
        "ended_ms": ended,
        "end_reason": rng.choice(("full", "full", "unplugged", "resident")) if closed else None,
        "first_wh": 1_000_000,
        "last_wh": 1_000_000 + (s["energy_wh"] if closed else 0),
        "energy_wh": s["energy_wh"] if closed else 0,
        "peak_w": 240.5,
        "w": 0.0 if closed else 240.5,
        "cost_fen": billed,
        "billed_fen": billed,
        "refund_fen": 0,
        "bill": (
            {
                "total_fen": billed,
                "lines": [
                    {
                        "code": "power_tier",
                        "label_zh": "充电",
                        "label_en": "charging",
                        "quantity": str(hours),
                        "unit": "h",
                        "amount_fen": billed,
                    }
                ],
            }
            if closed
            else None
        ),
        "flags": [],
        "reasons": [],
    }
    version = 2 if closed else 1
    ts = ended if ended is not None else s["started_ms"]
    return {
        "id": f"{shed_id}-{s['id']}-v{version}",
        "kind": "session",
        "key": s["id"],
        "version": version,
        "ts": ts,
        "data": data,
    }


def _row(shed_id: str, r: dict[str, Any]) -> tuple[Any, ...]:
    d = r["data"]
    return (
        shed_id, d["id"], d["port"], "card", d["auth"]["ref"], "until_full", None, None,
        "default", 1, json.dumps(d["tariff"]), d["started_ms"], d["stop_ms"], d["ended_ms"],
        d["end_reason"], d["first_wh"], d["last_wh"], d["energy_wh"], d["peak_w"],
        d["billed_fen"], d["refund_fen"], json.dumps(d["flags"]),
        json.dumps(d["bill"]) if d["bill"] is not None else None, json.dumps(d),
        r["version"], r["ts"], r["ts"],
    )  # fmt: skip


# ------------------------------------------------------------------ the API under uvicorn


class _Api:
    def __init__(self, url: str, workers: int, log: Path) -> None:
        self.port = _free_port()
        env = {
            **os.environ,
            "EBSHED_API_DATABASE_URL": url,
            "EBSHED_API_ADMIN_TOKEN": ADMIN_TOKEN,
            "EBSHED_API_PUBLIC_BASE_URL": f"http://127.0.0.1:{self.port}",
            "EBSHED_API_PAY_WORKERS": "false",
        }
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app_from_env",
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers),
               "--log-level", "warning", "--no-access-log"]  # fmt: skip
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, _ = _call(self.port, "GET", "/healthz", None, {})
                if status == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError("the API did not start within 60 s")

    def register(self, shed_ids: list[str]) -> dict[str, str]:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
        body = json.dumps({"id": "ingest", "name": "ingest"}).encode()
        _call(self.port, "POST", "/api/v1/admin/compounds", body, admin)
        tokens = {}
        for shed_id in shed_ids:
            shed = {"id": shed_id, "name": shed_id, "compound_id": "ingest",
                    "ports": list(range(1, 34))}  # fmt: skip
            status, answer = _call(
                self.port, "POST", "/api/v1/admin/sheds", json.dumps(shed).encode(), admin
            )
            if status != 201:
                raise RuntimeError(f"registering {shed_id}: {status} {answer!r}")
            tokens[shed_id] = json.loads(answer)["token"]
        return tokens

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _call(
    port: int, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def _post_all(port: int, outboxes: list[_Outbox], tokens: dict[str, str], clients: int) -> float:
    """Seconds from the first call to the last answer; every answer checked."""
    errors: list[str] = []
    start = threading.Barrier(clients + 1)

    def client(mine: list[_Outbox]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        start.wait()
        try:
            for b in range(max(len(o.bodies) for o in mine) if mine else 0):
                for box in mine:
                    if b >= len(box.bodies):
                        continue
                    headers = {"Authorization": f"Bearer {tokens[box.shed_id]}",
                               "Content-Type": "application/json"}  # fmt: skip
                    conn.request("POST", f"/api/v1/sheds/{box.shed_id}/uplink",
                                 body=box.bodies[b], headers=headers)  # fmt: skip
                    answer = conn.getresponse()
                    text_ = answer.read()
                    if answer.status != 200:
                        errors.append(f"{box.shed_id} batch {b}: {answer.status} {text_[:300]!r}")
                        return
                    got = json.loads(text_)
                    applied, dup = box.expected[b]
                    if (
                        got["rejected"]
                        or sorted(got["applied"]) != sorted(applied)
                        or sorted(got["duplicates"]) != dup
                    ):
                        errors.append(f"{box.shed_id} batch {b}: unexpected answer")
                        return
        except Exception as err:
            errors.append(f"client: {err!r}")
        finally:
            conn.close()

    return _timed(client, outboxes, clients, start, errors)


def _check(url: str, outboxes: list[_Outbox]) -> dict[str, Any]:
    """What the database holds after the run: each session once, each closed one
    counted once in the rollups (where they are kept)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            sessions = conn.execute(text("SELECT count(*) FROM charge_sessions")).scalar_one()
            closed = conn.execute(
                text("SELECT count(*) FROM charge_sessions WHERE ended_ms IS NOT NULL")
            ).scalar_one()
            count, total = conn.execute(
                text("SELECT count(*), coalesce(sum(version), 0) FROM record_versions")
            ).one()
            versions = (int(count), int(total))
            has_rollups = conn.execute(
                text("SELECT to_regclass('report_socket_days') IS NOT NULL")
            ).scalar_one()
            counted = (
                int(
                    conn.execute(
                        text("SELECT coalesce(sum(sessions), 0) FROM report_socket_days")
                    ).scalar_one()
                )
                if has_rollups
                else None
            )
    finally:
        engine.dispose()
    want_sessions = sum(o.sessions for o in outboxes)
    want_closed = sum(o.closed for o in outboxes)
    if (sessions, closed, versions[0], versions[1]) != (
        want_sessions,
        want_closed,
        want_sessions,
        want_sessions + want_closed,
    ):
        raise AssertionError(
            f"stored {sessions} sessions ({closed} closed), {versions[0]} version rows "
            f"summing to {versions[1]}; expected {want_sessions} ({want_closed} closed)"
        )
    if counted is not None and counted != want_closed:
        raise AssertionError(f"the rollups count {counted} sessions, {want_closed} closed")
    return {"sessions_stored": sessions, "sessions_closed": closed, "rollup_sessions": counted}


# ------------------------------------------------------------------ the baseline


def _bare_insert(url: str, outboxes: list[_Outbox], clients: int) -> float:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bare_sessions")
        conn.execute("CREATE TABLE bare_sessions (LIKE charge_sessions INCLUDING DEFAULTS)")
        conn.execute("ALTER TABLE bare_sessions ADD PRIMARY KEY (shed_id, id, version)")
    sql = (
        f"INSERT INTO bare_sessions ({', '.join(COLUMNS)}) "
        f"VALUES ({', '.join(['%s'] * len(COLUMNS))}) ON CONFLICT DO NOTHING"
    )
    start = threading.Barrier(clients + 1)
    errors: list[str] = []

    def client(mine: list[_Outbox]) -> None:
        with psycopg.connect(dsn) as conn:
            start.wait()
            try:
                for batch in _interleaved(mine):
                    with conn.transaction(), conn.cursor() as cur:
                        cur.executemany(sql, batch)
            except Exception as err:
                errors.append(repr(err))

    return _timed(client, outboxes, clients, start, errors)


def _timed(
    client: Callable[[list[_Outbox]], None],
    outboxes: list[_Outbox],
    clients: int,
    start: threading.Barrier,
    errors: list[str],
) -> float:
    """Run `clients` threads, each on its share of the outboxes, released together
    by `start`; the seconds from the release until the last one is done."""
    threads = [
        threading.Thread(target=client, args=(outboxes[i::clients],), daemon=True)
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise AssertionError("; ".join(errors[:5]))
    return elapsed


def _interleaved(mine: list[_Outbox]) -> Iterator[list[tuple[Any, ...]]]:
    for b in range(max(len(o.rows) for o in mine) if mine else 0):
        for box in mine:
            if b < len(box.rows):
                yield box.rows[b]
