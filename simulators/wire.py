"""What simulated devices put on the wire: MQTT messages as plain values.

Device models never publish: they return `Outgoing` values, and an I/O runner
(`simulators.mqtt_runner`) or a test decides what to do with them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

TOPIC_ROOT = "ebs/v1"
_ID_RE = re.compile(r"[a-z0-9-]{1,32}")
U32 = 1 << 32

QOS_TELEMETRY = 0
QOS_RELIABLE = 1  # events, acks, status, bay occupancy, env


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One MQTT publish: full topic, UTF-8 JSON payload, QoS and retain flag."""

    topic: str
    payload: bytes
    qos: int
    retain: bool

    def json(self) -> dict[str, Any]:
        """The payload decoded (convenience for tests and drivers)."""
        value = json.loads(self.payload)
        if not isinstance(value, dict):
            raise TypeError("payload is not a JSON object")
        return value


class Device(Protocol):
    """Anything the runner can drive: it belongs to a shed and ticks."""

    @property
    def shed(self) -> str: ...

    def tick(self, now_ms: int) -> list[Outgoing]: ...


def check_id(kind: str, value: str) -> str:
    """Validate a shed, board or sensor id (`[a-z0-9-]{1,32}`)."""
    if not _ID_RE.fullmatch(value):
        raise ValueError(f"{kind} id {value!r} must match [a-z0-9-]{{1,32}}")
    return value


def topic(shed: str, *parts: object) -> str:
    return "/".join((TOPIC_ROOT, shed, *(str(p) for p in parts)))


def encode(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, keys in the order given (stable output)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
