"""MQTT device contract v1: topics, payload decoding and encoding. No I/O.

`MqttCodec.decode(topic, payload, now_ms)` turns one MQTT message into a typed
message from `firmware_bridge.messages`, or into a `Drop` that carries a stable
reason code (see `DropReason`). It never raises for any input. The encoders
turn commands and controller state into payload bytes.

What the codec checks is exactly what one message can tell: the topic belongs
to this shed and names a configured port or bay, the payload is at most 64 KiB
of UTF-8 JSON holding an object, every required field is present with the
right JSON type and range (unknown fields are ignored), and a telemetry `ts` is
at most 5 minutes ahead of `now_ms`.

What needs history is not its job:
- "a sample older than the newest one already seen for that port is
  discarded" is decided by the controller's metering, which keeps per-port
  state;
- "a `cmd/ack` matches a command that was sent" is decided by the adapter,
  which keeps the pending commands.

The future-`ts` rule applies to telemetry samples only, as the contract
states it: an event, an ack or a status from a board with a wrong clock is
still delivered (a safety event must never be lost to a clock), and the
controller uses its own receive time for those.

Decoding runs for every telemetry sample, so a telemetry message takes a
fast path first: its topic is looked up in a table of the configured ports'
telemetry topics, and msgspec decodes the payload straight into the contract's
fields, types and bounds in one pass in C (strict: `true` is no integer, `1.0`
no integer, `null` no number; unknown fields are skipped). Whatever the fast
path refuses is decoded again by the field-by-field reader below, which names
the stable reason; it parses the JSON once with a decoder built at import, then
does plain dict look-ups and `type(x) is ...` checks (JSON gives exact types,
and `type(x) is int` also rejects `bool`, a subclass of `int`). Both accept
and refuse the same payloads (a property test holds them to it), with one
difference: the fast path skips unknown fields without converting them, so an
unknown field holding an integer of more than 4300 digits (over Python's
int-conversion limit) does not cost a valid sample its delivery.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Annotated, Final, Literal, NoReturn

import msgspec

from firmware_bridge.messages import (
    ENV_KINDS,
    EVENT_TYPES,
    BayOccupancy,
    BoardStatus,
    CmdAck,
    DeviceMessage,
    EnvKind,
    EnvReading,
    EventType,
    PortCommand,
    PortEvent,
    Telemetry,
)

DropReason = Literal[
    "too_large",
    "not_utf8",
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "out_of_range",
    "unknown_port",
    "unknown_bay",
    "bad_topic",
    "other_shed",
    "future_ts",
    "unknown_event_type",
    "bad_card_uid",
    "unknown_kind",
]

MAX_PAYLOAD_BYTES: Final = 64 * 1024
MAX_FUTURE_SKEW_MS: Final = 300_000
U32_MAX: Final = 2**32 - 1
TS_MAX: Final = 2**53
V_MAX: Final = 300.0
W_MAX: Final = 5000.0
PORT_MAX: Final = 999

_ID_RE: Final = re.compile(r"[a-z0-9-]{1,32}")  # shed, board and sensor ids
_CARD_UID_RE: Final = re.compile(r"[0-9A-Fa-f]{4,20}")


@dataclass(frozen=True, slots=True)
class Drop:
    """Why a message was refused. `reason` is stable (metrics, docs); `detail` is for people."""

    reason: DropReason
    detail: str


class _Bad(Exception):
    """Internal: aborts decoding of one message; becomes a `Drop`."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: DropReason = reason
        self.detail = detail


def _bad(reason: DropReason, detail: str) -> NoReturn:
    raise _Bad(reason, detail)


def _refuse_constant(name: str) -> NoReturn:
    # json.loads accepts NaN, Infinity and -Infinity unless told otherwise.
    raise ValueError(f"{name} is not JSON")


# Built once: `json.loads(text, parse_constant=...)` would build a decoder per call.
_JSON: Final = json.JSONDecoder(parse_constant=_refuse_constant)


class _TelemetryFields(msgspec.Struct, gc=False):
    """The telemetry payload with the contract's types and bounds: the fast path's schema.

    Must accept exactly what `MqttCodec._telemetry` accepts (tests hold them to it).
    """

    ts: Annotated[int, msgspec.Meta(ge=0, le=TS_MAX)]
    seq: Annotated[int, msgspec.Meta(ge=0, le=U32_MAX)]
    v: Annotated[float, msgspec.Meta(ge=0.0, le=V_MAX)]
    a: Annotated[float, msgspec.Meta(ge=0.0)]  # finite: msgspec refuses 1e400
    w: Annotated[float, msgspec.Meta(ge=0.0, le=W_MAX)]
    wh: Annotated[int, msgspec.Meta(ge=0, le=U32_MAX)]
    relay: bool
    temp_c: float | msgspec.UnsetType = msgspec.UNSET  # optional, but never null


_TELEMETRY: Final = msgspec.json.Decoder(_TelemetryFields)


def valid_id(text: str) -> bool:
    """True for a shed, board or sensor id: `[a-z0-9-]{1,32}`."""
    return _ID_RE.fullmatch(text) is not None


# --------------------------------------------------------------------------- topics


class Topics:
    """Topic strings of one shed. The shed id is checked, so no id can smuggle in `+` or `#`."""

    __slots__ = ("prefix", "shed")

    def __init__(self, shed: str) -> None:
        if not valid_id(shed):
            raise ValueError(f"shed id must match [a-z0-9-]{{1,32}}: {shed!r}")
        self.shed = shed
        self.prefix = f"ebs/v1/{shed}/"

    def subscriptions(self) -> list[tuple[str, int]]:
        """Filters (with the contract's QoS) for everything devices of this shed publish."""
        p = self.prefix
        return [
            (f"{p}board/+/status", 1),
            (f"{p}port/+/telemetry", 0),
            (f"{p}port/+/event", 1),
            (f"{p}port/+/cmd/ack", 1),
            (f"{p}bay/+/occupancy", 1),
            (f"{p}env/+", 1),
        ]

    def all_filter(self) -> str:
        """`ebs/v1/{shed}/#`: everything of this shed, the controller's own topics included."""
        return f"{self.prefix}#"

    def command(self, port: int) -> str:
        return f"{self.prefix}port/{port}/cmd"

    def port_state(self, port: int) -> str:
        return f"{self.prefix}port/{port}/state"

    def controller_status(self) -> str:
        return f"{self.prefix}controller/status"

    def telemetry(self, port: int) -> str:
        return f"{self.prefix}port/{port}/telemetry"

    def event(self, port: int) -> str:
        return f"{self.prefix}port/{port}/event"

    def command_ack(self, port: int) -> str:
        return f"{self.prefix}port/{port}/cmd/ack"

    def board_status(self, board: str) -> str:
        return f"{self.prefix}board/{board}/status"

    def bay_occupancy(self, bay: int) -> str:
        return f"{self.prefix}bay/{bay}/occupancy"

    def env(self, sensor: str) -> str:
        return f"{self.prefix}env/{sensor}"


def _topic_number(text: str, max_digits: int) -> int | None:
    """A decimal topic level without sign or leading zeros (`0` itself allowed), else None."""
    if not text or len(text) > max_digits or not text.isascii() or not text.isdigit():
        return None
    if len(text) > 1 and text[0] == "0":
        return None
    return int(text)


# --------------------------------------------------------------------------- field readers


def _get(d: dict[str, object], key: str) -> object:
    try:
        return d[key]
    except KeyError:
        _bad("missing_field", f"{key} is missing")


def _int(d: dict[str, object], key: str, hi: int) -> int:
    x = _get(d, key)
    if type(x) is not int:
        _bad("wrong_type", f"{key} must be an integer")
    if x < 0 or x > hi:
        _bad("out_of_range", f"{key} must be in 0..{hi}")
    return x


def _as_number(key: str, x: object) -> float:
    if type(x) is float:
        if not math.isfinite(x):  # JSON 1e400 parses to inf (NaN is refused by json.loads)
            _bad("out_of_range", f"{key} must be finite")
        return x
    if type(x) is int:
        try:
            return float(x)
        except OverflowError:
            _bad("out_of_range", f"{key} is too large")
    _bad("wrong_type", f"{key} must be a number")


def _number(d: dict[str, object], key: str, lo: float, hi: float) -> float:
    x = _as_number(key, _get(d, key))
    if x < lo or x > hi:
        _bad(
            "out_of_range",
            f"{key} must be >= {lo:g}" if hi == math.inf else f"{key} must be in {lo:g}..{hi:g}",
        )
    return x


def _opt_number(d: dict[str, object], key: str) -> float | None:
    if key not in d:
        return None
    return _as_number(key, d[key])


def _bool(d: dict[str, object], key: str) -> bool:
    x = _get(d, key)
    if type(x) is not bool:
        _bad("wrong_type", f"{key} must be true or false")
    return x


def _str(d: dict[str, object], key: str) -> str:
    x = _get(d, key)
    if type(x) is not str:
        _bad("wrong_type", f"{key} must be a string")
    return x


def _opt_str(d: dict[str, object], key: str, *, null_ok: bool = False) -> str | None:
    if key not in d:
        return None
    x = d[key]
    if x is None and null_ok:
        return None
    if type(x) is not str:
        _bad("wrong_type", f"{key} must be a string" + (" or null" if null_ok else ""))
    return x


# --------------------------------------------------------------------------- codec


class MqttCodec:
    """Decodes the device traffic of one shed. Stateless apart from its configuration."""

    __slots__ = ("_bays", "_max_payload", "_max_skew_ms", "_ports", "_telemetry_ports", "topics")

    def __init__(
        self,
        shed: str,
        ports: frozenset[int] | set[int] | range,
        bays: frozenset[int] | set[int] | range | None = None,
        *,
        max_future_skew_ms: int = MAX_FUTURE_SKEW_MS,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    ) -> None:
        self.topics = Topics(shed)
        self._ports = frozenset(ports)
        if any(not 1 <= p <= PORT_MAX for p in self._ports):
            raise ValueError(f"ports must be in 1..{PORT_MAX}")
        self._bays = None if bays is None else frozenset(bays)
        if self._bays is not None and any(b < 1 for b in self._bays):
            raise ValueError("bays must be positive")
        self._max_skew_ms = max_future_skew_ms
        self._max_payload = max_payload_bytes
        # The fast path's topic table: one exact string per configured port.
        self._telemetry_ports = {self.topics.telemetry(p): p for p in self._ports}

    @property
    def shed(self) -> str:
        return self.topics.shed

    def decode(self, topic: str, payload: bytes, now_ms: int) -> DeviceMessage | Drop:
        """One MQTT message to a typed message, or a `Drop`. Never raises."""
        port = self._telemetry_ports.get(topic)
        if port is not None:
            sample = self._fast_telemetry(port, payload, now_ms)
            if sample is not None:
                return sample
        try:
            return self._decode(topic, payload, now_ms)
        except _Bad as bad:
            return Drop(bad.reason, bad.detail)

    def _fast_telemetry(self, port: int, payload: bytes, now_ms: int) -> Telemetry | None:
        """A valid sample in one pass, or None: then the field-by-field reader says why not."""
        if len(payload) > self._max_payload:
            return None
        try:
            # Through str, so that invalid UTF-8 anywhere is refused as the contract says.
            f = _TELEMETRY.decode(payload.decode("utf-8"))
        except (UnicodeDecodeError, msgspec.MsgspecError, RecursionError):
            return None
        if f.ts - now_ms > self._max_skew_ms:
            return None
        temp_c = None if f.temp_c is msgspec.UNSET else f.temp_c
        return Telemetry(port, f.ts, f.seq, f.v, f.a, f.w, f.wh, f.relay, temp_c)

    def _decode(self, topic: str, payload: bytes, now_ms: int) -> DeviceMessage:
        prefix = self.topics.prefix
        if not topic.startswith(prefix):
            if topic.startswith("ebs/v1/"):
                _bad("other_shed", "topic of another shed")
            _bad("bad_topic", "not an ebs/v1 topic")
        levels = topic[len(prefix) :].split("/")
        n = len(levels)
        kind = levels[0]
        if kind == "port" and n >= 3:
            port = self._port(levels[1])
            if n == 3 and levels[2] == "telemetry":
                return self._telemetry(port, self._object(payload), now_ms)
            if n == 3 and levels[2] == "event":
                return _event(port, self._object(payload))
            if n == 4 and levels[2] == "cmd" and levels[3] == "ack":
                return _ack(port, self._object(payload))
        elif n == 3 and kind == "board" and levels[2] == "status":
            if not valid_id(levels[1]):
                _bad("bad_topic", "board id must match [a-z0-9-]{1,32}")
            return _board_status(levels[1], self._object(payload))
        elif n == 3 and kind == "bay" and levels[2] == "occupancy":
            return _occupancy(self._bay(levels[1]), self._object(payload))
        elif n == 2 and kind == "env":
            if not valid_id(levels[1]):
                _bad("bad_topic", "sensor id must match [a-z0-9-]{1,32}")
            return _env(levels[1], self._object(payload))
        _bad("bad_topic", "not a device-to-controller topic")

    def _port(self, text: str) -> int:
        port = _topic_number(text, 3)
        if port is None:
            _bad("bad_topic", "port must be a number 1..999")
        if port not in self._ports:
            _bad("unknown_port", f"port {port} is not configured")
        return port

    def _bay(self, text: str) -> int:
        bay = _topic_number(text, 9)
        if bay is None:
            _bad("bad_topic", "bay must be a positive number")
        if bay < 1 or (self._bays is not None and bay not in self._bays):
            _bad("unknown_bay", f"bay {bay} is not configured")
        return bay

    def _object(self, payload: bytes) -> dict[str, object]:
        if len(payload) > self._max_payload:
            _bad("too_large", f"payload is {len(payload)} bytes, limit {self._max_payload}")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            _bad("not_utf8", "payload is not UTF-8")
        try:
            # ValueError covers JSONDecodeError and int strings over the digit limit.
            obj = _JSON.decode(text)
        except (ValueError, RecursionError):
            _bad("not_json", "payload is not JSON")
        if type(obj) is not dict:
            _bad("not_object", "payload is not a JSON object")
        return obj

    def _telemetry(self, port: int, d: dict[str, object], now_ms: int) -> Telemetry:
        ts = _int(d, "ts", TS_MAX)
        seq = _int(d, "seq", U32_MAX)
        v = _number(d, "v", 0.0, V_MAX)
        a = _number(d, "a", 0.0, math.inf)
        w = _number(d, "w", 0.0, W_MAX)
        wh = _int(d, "wh", U32_MAX)
        relay = _bool(d, "relay")
        temp_c = _opt_number(d, "temp_c")
        if ts - now_ms > self._max_skew_ms:
            _bad("future_ts", f"ts is {ts - now_ms} ms ahead of the controller clock")
        return Telemetry(port, ts, seq, v, a, w, wh, relay, temp_c)


def _event(port: int, d: dict[str, object]) -> PortEvent:
    ts = _int(d, "ts", TS_MAX)
    type_ = _str(d, "type")
    if type_ not in EVENT_TYPES:
        _bad("unknown_event_type", f"event type {type_[:40]!r} is unknown")
    event_type: EventType = type_  # type: ignore[assignment]  # checked against EVENT_TYPES
    card_uid = None
    action = None
    if event_type == "card":
        uid = _str(d, "card_uid")
        if _CARD_UID_RE.fullmatch(uid) is None:
            _bad("bad_card_uid", "card_uid must be 4-20 hex digits")
        card_uid = uid.upper()
    elif event_type == "button":
        action = _opt_str(d, "action")
    return PortEvent(port, ts, event_type, card_uid, action)


def _ack(port: int, d: dict[str, object]) -> CmdAck:
    return CmdAck(
        port,
        _str(d, "id"),
        _bool(d, "ok"),
        _bool(d, "relay"),
        _opt_str(d, "error", null_ok=True),
    )


def _board_status(board: str, d: dict[str, object]) -> BoardStatus:
    online = _bool(d, "online")
    fw = _opt_str(d, "fw")
    ports: tuple[int, ...] = ()
    if "ports" in d:
        raw = d["ports"]
        if type(raw) is not list or any(type(p) is not int for p in raw):
            _bad("wrong_type", "ports must be a list of integers")
        ports = tuple(raw)
        if any(not 1 <= p <= PORT_MAX for p in ports):
            _bad("out_of_range", f"ports must be in 1..{PORT_MAX}")
    ts = _int(d, "ts", TS_MAX) if "ts" in d else None
    return BoardStatus(board, online, fw, ports, ts)


def _occupancy(bay: int, d: dict[str, object]) -> BayOccupancy:
    return BayOccupancy(
        bay, _int(d, "ts", TS_MAX), _bool(d, "occupied"), _opt_number(d, "battery_v")
    )


def _env(sensor: str, d: dict[str, object]) -> EnvReading:
    ts = _int(d, "ts", TS_MAX)
    kind = _str(d, "kind")
    if kind not in ENV_KINDS:
        _bad("unknown_kind", f"env kind {kind[:40]!r} is unknown")
    env_kind: EnvKind = kind  # type: ignore[assignment]  # checked against ENV_KINDS
    value = _as_number("value", _get(d, "value"))
    return EnvReading(sensor, ts, env_kind, value, _bool(d, "alarm"))


# --------------------------------------------------------------------------- encoders


def _dumps(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _positive_int(name: str, x: int | None) -> int:
    if type(x) is not int or x < 1:
        raise ValueError(f"{name} must be a positive integer, got {x!r}")
    return x


def encode_command(cmd: PortCommand) -> bytes:
    """`port/{port}/cmd` payload. Raises ValueError for a command the contract cannot carry."""
    if not cmd.id:
        raise ValueError("command id must not be empty")
    body: dict[str, object] = {"id": cmd.id, "op": cmd.op}
    if cmd.op == "on":
        body["lease_s"] = _positive_int("lease_s", cmd.lease_s)
        body["max_w"] = _positive_int("max_w", cmd.max_w)
    elif cmd.op == "renew":
        body["lease_s"] = _positive_int("lease_s", cmd.lease_s)
    elif cmd.op != "off":
        raise ValueError(f"unknown op {cmd.op!r}")
    return _dumps(body)


def encode_controller_status(
    online: bool, version: str | None = None, ts: int | None = None
) -> bytes:
    """`controller/status` payload; `encode_controller_status(False)` is the last will."""
    body: dict[str, object] = {"online": online}
    if version is not None:
        body["version"] = version
    if ts is not None:
        body["ts"] = ts
    return _dumps(body)


def encode_port_state(
    state: str, session: str | None, w: float, session_wh: int, since: int
) -> bytes:
    """`port/{port}/state` payload: the controller's view of one port, for local displays."""
    return _dumps(
        {
            "state": state,
            "session": session,
            "w": float(w),
            "session_wh": session_wh,
            "since": since,
        }
    )


# --------------------------------------------------------------------------- drop accounting


@dataclass(slots=True)
class DropCounters:
    """Counts drops per reason and rate-limits their logging per topic.

    `record(drop, topic, now_ms)` counts the drop and says whether to log it:
    at most once per `log_interval_ms` per topic. The topic table is pruned
    when it grows past `max_topics`, so random topics cannot grow memory.
    """

    log_interval_ms: int = 60_000
    max_topics: int = 4096
    by_reason: dict[str, int] = field(default_factory=dict)
    _last_logged: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def record(self, drop: Drop, topic: str, now_ms: int) -> bool:
        self.by_reason[drop.reason] = self.by_reason.get(drop.reason, 0) + 1
        return self.should_log(topic, now_ms)

    def should_log(self, topic: str, now_ms: int) -> bool:
        last = self._last_logged.get(topic)
        if last is not None and now_ms - last < self.log_interval_ms:
            return False
        if last is None and len(self._last_logged) >= self.max_topics:
            self._prune(now_ms)
            if len(self._last_logged) >= self.max_topics:
                return False  # a flood of distinct topics: counted, not logged
        self._last_logged[topic] = now_ms
        return True

    def _prune(self, now_ms: int) -> None:
        horizon = now_ms - self.log_interval_ms
        self._last_logged = {t: at for t, at in self._last_logged.items() if at > horizon}

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())
