"""What the benchmarks share: the result shape, a bench shed, device load, a lean MQTT publisher.

The load generators here speak the device contract (`mqtt-device-v1`) from
first principles, like third-party firmware would: they share no code with the
controller's receiver.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

TOPIC_ROOT = "ebs/v1"
PORTS_PER_BOARD = 12
# A bench shed draws up to 200 x 300 W = 60 kW; the budget is sized for it so the
# budget rule never stops the bench's sessions (the default suits a 24-socket shed).
BENCH_BUDGET_W = 60_000
START_FEN = 500  # prepaid per bench session: far more than a bench run costs


# --------------------------------------------------------------------------- results


def result(
    name: str,
    figure: float,
    unit: str,
    target: str,
    met: bool,
    *,
    baseline: float | None = None,
    ratio: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The shape every benchmark returns (and `--json` writes), plus extra keys."""
    return {
        "name": name,
        "figure": figure,
        "baseline": baseline,
        "ratio": ratio,
        "unit": unit,
        "target": target,
        "met": met,
        **extra,
    }


# --------------------------------------------------------------------------- databases


class throwaway_database:
    """A throwaway database: a temporary SQLite file, or a new PostgreSQL database."""

    def __init__(self, backend: str, postgres: str) -> None:
        from api.db import normalize_url  # not for the MQTT benches: they never import SQL

        if backend not in ("sqlite", "postgresql"):
            raise ValueError("backend must be sqlite or postgresql")
        self.backend, self.server_url = backend, normalize_url(postgres)
        self.tmp: tempfile.TemporaryDirectory[str] | None = None
        self.server: Any = None  # an Engine
        self.name = f"ebshed_bench_{uuid.uuid4().hex[:10]}"

    def __enter__(self) -> str:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        if self.backend == "sqlite":
            self.tmp = tempfile.TemporaryDirectory(prefix="ebshed-bench-")
            return f"sqlite:///{Path(self.tmp.name) / 'central.sqlite'}"
        self.server = create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        with self.server.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        url = make_url(self.server_url).set(database=self.name)
        return url.render_as_string(hide_password=False)

    def __exit__(self, *_exc: object) -> None:
        from sqlalchemy import text

        if self.tmp is not None:
            self.tmp.cleanup()
        if self.server is not None:
            with self.server.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            self.server.dispose()


# --------------------------------------------------------------------------- the bench shed


def parse_broker(spec: str) -> tuple[str, int]:
    """`host:port` (port defaults to 1883)."""
    host, sep, port = spec.rpartition(":")
    if not sep:
        return spec, 1883
    if not host or not port.isdigit():
        raise ValueError(f"broker must be host:port, not {spec!r}")
    return host, int(port)


def new_shed_id(prefix: str) -> str:
    """A shed id of its own for one run, so runs never see each other's traffic."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def board_layout(sockets: int) -> dict[str, list[int]]:
    """Sockets 1..n on boards of 12 (the last one may carry fewer)."""
    if not 1 <= sockets <= 999:
        raise ValueError("sockets must be in 1..999")
    ports = list(range(1, sockets + 1))
    return {
        f"b{i // PORTS_PER_BOARD + 1}": ports[i : i + PORTS_PER_BOARD]
        for i in range(0, sockets, PORTS_PER_BOARD)
    }


def shed_config(shed: str, sockets: int, broker: str, data_dir: str) -> dict[str, Any]:
    """A shed config (what `settings_from_dict` and the TOML file hold)."""
    host, port = parse_broker(broker)
    return {
        "shed": {"id": shed, "name": f"bench {sockets} sockets", "data_dir": data_dir},
        "mqtt": {"host": host, "port": port, "client_id": f"ebshed-controller-{shed}"},
        "boards": [{"id": b, "ports": ports} for b, ports in board_layout(sockets).items()],
        "rules": {"budget_w": BENCH_BUDGET_W},
    }


def to_toml(config: Mapping[str, Any]) -> str:
    """TOML for a config made by `shed_config` (tables, arrays of tables, scalars, lists)."""
    lines: list[str] = []
    for key, value in config.items():
        if isinstance(value, Mapping):
            lines.append(f"[{key}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in value.items()]
        elif isinstance(value, list):
            for item in value:
                lines.append(f"[[{key}]]")
                lines += [f"{k} = {json.dumps(v)}" for k, v in item.items()]
        else:
            raise TypeError(f"top-level {key!r} must be a table or an array of tables")
        lines.append("")
    return "\n".join(lines)


def retained_topics(shed: str, ports: Iterable[int], boards: Iterable[str] = ()) -> list[str]:
    """Retained topics a bench run leaves on the broker (the controller's, the boards')."""
    prefix = f"{TOPIC_ROOT}/{shed}/"
    return [
        f"{prefix}controller/status",
        *(f"{prefix}port/{p}/state" for p in ports),
        *(f"{prefix}board/{b}/status" for b in boards),
    ]


# --------------------------------------------------------------------------- device load

_TELEMETRY = b'{"ts":%d,"seq":%d,"v":%.1f,"a":%.2f,"w":%.1f,"wh":%d,"relay":%s,"temp_c":%.1f}'
U32 = 1 << 32


class PortLoad:
    """Telemetry of sockets charging e-bikes (150-300 W each), by the contract's rules.

    `seq` counts up per port, `wh` is a cumulative register that only grows (by
    what the power delivers), `ts` is the caller's clock and never goes back.
    """

    def __init__(self, shed: str, ports: Iterable[int], seed: int = 7) -> None:
        rng = random.Random(seed)
        self.ports = tuple(ports)
        self.topic = {p: f"{TOPIC_ROOT}/{shed}/port/{p}/telemetry".encode() for p in self.ports}
        self.seq = dict.fromkeys(self.ports, 0)
        self.wh = {p: rng.randrange(10_000, 4_000_000) for p in self.ports}
        self.energy = dict.fromkeys(self.ports, 0.0)  # Wh not yet in the register
        self.load_w = {p: rng.uniform(150.0, 300.0) for p in self.ports}
        self.volts = {p: rng.uniform(222.0, 233.0) for p in self.ports}
        self.temp_c = {p: rng.uniform(26.0, 34.0) for p in self.ports}
        self.relay = dict.fromkeys(self.ports, False)
        self._last_ts = dict.fromkeys(self.ports, 0)

    def sample(self, port: int, ts: int, dt_s: float) -> bytes:
        """One telemetry payload; the register advances by the energy of `dt_s` seconds."""
        ts = max(ts, self._last_ts[port])
        self._last_ts[port] = ts
        seq = self.seq[port] = (self.seq[port] + 1) % U32
        on = self.relay[port]
        w = self.load_w[port] * (1.0 + 0.01 * ((seq % 7) - 3)) if on else 0.0
        v = self.volts[port] + 0.1 * ((seq % 5) - 2)
        if on:
            e = self.energy[port] + w * dt_s / 3600.0
            whole = int(e)
            self.energy[port] = e - whole
            self.wh[port] = (self.wh[port] + whole) % U32
        return _TELEMETRY % (
            ts,
            seq,
            v,
            w / v,
            w,
            self.wh[port],
            b"true" if on else b"false",
            self.temp_c[port],
        )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --------------------------------------------------------------------------- lean MQTT publisher


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_packet(topic: bytes, payload: bytes, retain: bool = False) -> bytes:
    """An MQTT 3.1.1 PUBLISH packet at QoS 0."""
    return (
        (b"\x31" if retain else b"\x30")
        + _varint(2 + len(topic) + len(payload))
        + len(topic).to_bytes(2, "big")
        + topic
        + payload
    )


class RawPublisher:
    """A minimal MQTT 3.1.1 client that only publishes at QoS 0, from prebuilt packets.

    Load generation must outrun the consumers it measures on a small machine;
    a general client spends more per message than the consumers do, this one
    a few microseconds. It never reads: the broker sends it nothing but PINGRESP.
    """

    def __init__(self, host: str, port: int, client_id: str, keepalive_s: int = 60) -> None:
        self._keepalive_s = keepalive_s
        self._sock = socket.create_connection((host, port), timeout=10)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cid = client_id.encode()
        variable = b"\x00\x04MQTT\x04\x02" + keepalive_s.to_bytes(2, "big")  # clean session
        body = variable + len(cid).to_bytes(2, "big") + cid
        self._sock.sendall(b"\x10" + _varint(len(body)) + body)
        connack = b""
        while len(connack) < 4:
            chunk = self._sock.recv(4 - len(connack))
            if not chunk:
                raise ConnectionError("broker closed the connection before CONNACK")
            connack += chunk
        if connack[0] != 0x20 or connack[3] != 0:
            raise ConnectionError(f"broker refused the connection: {connack!r}")
        self._sock.settimeout(None)
        self._last_ping = time.monotonic()

    def send(self, packets: bytes) -> None:
        self._sock.sendall(packets)
        if time.monotonic() - self._last_ping > self._keepalive_s / 3:
            self._sock.sendall(b"\xc0\x00")  # PINGREQ
            self._last_ping = time.monotonic()

    def clear_retained(self, topics: Iterable[str]) -> None:
        """An empty retained message deletes what the broker keeps on a topic."""
        self.send(b"".join(publish_packet(t.encode(), b"", retain=True) for t in topics))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.sendall(b"\xe0\x00")  # DISCONNECT
        self._sock.close()


def ack_payload(cmd_payload: bytes | bytearray) -> bytes | None:
    """A board's `cmd/ack` for a `cmd` payload (relay on for `on`/`renew`), or None if garbled."""
    try:
        cmd = json.loads(cmd_payload)
        cmd_id, op = cmd["id"], cmd["op"]
    except (ValueError, KeyError, TypeError):
        return None
    ack = {"id": cmd_id, "ok": True, "relay": op != "off", "error": None}
    return json.dumps(ack, separators=(",", ":")).encode()
