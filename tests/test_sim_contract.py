"""Every message the simulators produce conforms to contract mqtt-device-v1.

Three independent checks on one corpus that exercises every message kind:
1. a strict validator written here from the contract's tables (exact field
   names, JSON types, ranges, QoS and retain);
2. the accept rows of the contract's test vectors (data made independently of
   the project): same key sets and JSON types per topic kind;
3. the project's own receiver, `firmware_bridge.mqtt_codec.MqttCodec`: nothing
   is dropped, and what it decodes matches the payload.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.messages import (
    BayOccupancy,
    BoardStatus,
    CmdAck,
    EnvReading,
    PortCommand,
    PortEvent,
    Telemetry,
)
from firmware_bridge.mqtt_codec import Drop, MqttCodec, encode_command
from simulators.board import SimBoard
from simulators.ebike import lead_acid, lithium, no_taper_charger, overdraw_charger
from simulators.sensors import BaySensor, EnvSensor
from simulators.wire import Outgoing

VECTORS = Path(__file__).parent / "fixtures" / "contracts" / "mqtt-device-v1.jsonl"
SHED = "demo-1"  # the vectors' receiver configuration: shed demo-1, ports 1..12
T0 = 1_795_341_000_000  # the vectors' receiver clock
PORTS = range(1, 13)
U32_MAX = 2**32 - 1
TS_MAX = 2**53

EVENT_TYPES = {"overcurrent", "overtemp", "relay_fault", "lease_expired", "card", "button"}
QOS_RETAIN = {
    "telemetry": (0, False),
    "event": (1, False),
    "ack": (1, False),
    "status": (1, True),
    "bay": (1, True),
    "env": (1, False),
}
_TOPICS = [
    ("telemetry", re.compile(r"ebs/v1/[a-z0-9-]{1,32}/port/[1-9][0-9]{0,2}/telemetry")),
    ("event", re.compile(r"ebs/v1/[a-z0-9-]{1,32}/port/[1-9][0-9]{0,2}/event")),
    ("ack", re.compile(r"ebs/v1/[a-z0-9-]{1,32}/port/[1-9][0-9]{0,2}/cmd/ack")),
    ("status", re.compile(r"ebs/v1/[a-z0-9-]{1,32}/board/[a-z0-9-]{1,32}/status")),
    ("bay", re.compile(r"ebs/v1/[a-z0-9-]{1,32}/bay/[1-9][0-9]*/occupancy")),
    ("env", re.compile(r"ebs/v1/[a-z0-9-]{1,32}/env/[a-z0-9-]{1,32}")),
]


def topic_kind(topic: str) -> str:
    for kind, pattern in _TOPICS:
        if pattern.fullmatch(topic):
            return kind
    raise AssertionError(f"topic outside the contract: {topic}")


# ------------------------------------------------------------------ strict validator


def _int(lo: int, hi: int) -> Callable[[object], bool]:
    return lambda x: type(x) is int and lo <= x <= hi


def _num(lo: float = -math.inf, hi: float = math.inf) -> Callable[[object], bool]:
    return lambda x: type(x) in (int, float) and math.isfinite(x) and lo <= x <= hi  # type: ignore[operator, arg-type]


def _is(t: type) -> Callable[[object], bool]:
    return lambda x: type(x) is t


def _ports(x: object) -> bool:
    return type(x) is list and all(type(p) is int and 1 <= p <= 999 for p in x)


def _card_uid(x: object) -> bool:
    return type(x) is str and re.fullmatch(r"[0-9A-Fa-f]{4,20}", x) is not None


_SCHEMA: dict[
    str, tuple[dict[str, Callable[[object], bool]], dict[str, Callable[[object], bool]]]
] = {
    "telemetry": (
        {
            "ts": _int(0, TS_MAX),
            "seq": _int(0, U32_MAX),
            "v": _num(0, 300),
            "a": _num(0),
            "w": _num(0, 5000),
            "wh": _int(0, U32_MAX),
            "relay": _is(bool),
        },
        {"temp_c": _num()},
    ),
    "event": ({"ts": _int(0, TS_MAX), "type": lambda x: x in EVENT_TYPES}, {"action": _is(str)}),
    "ack": (
        {"id": _is(str), "ok": _is(bool), "relay": _is(bool)},
        {"error": lambda x: x is None or type(x) is str},
    ),
    "status": ({"online": _is(bool)}, {"fw": _is(str), "ports": _ports, "ts": _int(0, TS_MAX)}),
    "bay": ({"ts": _int(0, TS_MAX), "occupied": _is(bool)}, {"battery_v": _num(0)}),
    "env": (
        {
            "ts": _int(0, TS_MAX),
            "kind": lambda x: x in ("smoke", "temp", "water"),
            "value": _num(),
            "alarm": _is(bool),
        },
        {},
    ),
}


def validate(message: Outgoing) -> tuple[str, dict[str, Any]]:
    """Strict: the contract's fields only, each present when required, typed and in range."""
    kind = topic_kind(message.topic)
    assert (message.qos, message.retain) == QOS_RETAIN[kind], message
    assert len(message.payload) <= 64 * 1024
    body = json.loads(message.payload.decode("utf-8"))
    assert type(body) is dict, message
    required, optional = dict(_SCHEMA[kind][0]), dict(_SCHEMA[kind][1])
    if kind == "event" and body.get("type") == "card":
        required["card_uid"] = _card_uid
    missing = required.keys() - body.keys()
    assert not missing, (message, missing)
    unknown = body.keys() - required.keys() - optional.keys()
    assert not unknown, (message, unknown)
    for key, value in body.items():
        assert {**required, **optional}[key](value), (message, key, value)
    if kind == "event":
        assert ("action" in body) == (body["type"] == "button"), message
    if kind == "ack":
        assert body["ok"] == (body["error"] is None), message
    if kind == "status" and not body["online"]:
        assert body == {"online": False}, message
    return kind, body


# ------------------------------------------------------------------ vectors


def json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "array"
    return "object"


def shape_key(kind: str, body: dict[str, Any]) -> str:
    """Kinds whose payload shape depends on a field are told apart by it."""
    if kind == "event":
        return f"event:{body.get('type')}"
    if kind == "status":
        return f"status:{body.get('online')}"
    if kind == "ack":
        return f"ack:{body.get('ok')}"
    return kind


@cache
def vector_shapes() -> dict[str, list[dict[str, str]]]:
    """Accept rows of the vectors: per kind, the key -> JSON type maps they show."""
    shapes: dict[str, list[dict[str, str]]] = defaultdict(list)
    lines = VECTORS.read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:
        row = json.loads(line)
        if row["expect"] != "accept" or row["payload"] is None:
            continue
        body = json.loads(row["payload"])
        kind = topic_kind(row["topic"])
        if "extra_field" in body:  # "unknown fields are ignored": a receiver rule
            continue
        shapes[shape_key(kind, body)].append({k: json_type(v) for k, v in body.items()})
    return dict(shapes)


NUMBER_FIELDS = {"v", "a", "w", "temp_c", "value", "battery_v"}  # "number" in the contract


def compatible(field: str, sim_type: str, vector_type: str) -> bool:
    """Same JSON type, except that a contract "number" may be written 0 or 0.0."""
    numbers = {"integer", "number"}
    if field in NUMBER_FIELDS:
        return sim_type in numbers and vector_type in numbers
    return sim_type == vector_type


# ------------------------------------------------------------------ corpus


@dataclass(frozen=True)
class Produced:
    message: Outgoing
    at_ms: int  # simulated time when the device produced it


def on(port: int, cmd_id: str, lease_s: int = 120) -> bytes:
    return encode_command(PortCommand(port, cmd_id, "on", lease_s=lease_s, max_w=1000))


@cache
def corpus() -> tuple[Produced, ...]:
    """A shed with every behaviour that produces a message, run for 15 minutes."""
    rng = random.Random(2024)
    board = SimBoard(SHED, "b1", PORTS, rng=rng, start_ms=T0, wh_start={1: 4_294_967_000})
    bays = [BaySensor(SHED, n, rng=rng, start_ms=T0) for n in (1, 2)]
    smoke = EnvSensor(SHED, "smoke-1", "smoke", rng=rng, start_ms=T0)
    temp = EnvSensor(SHED, "temp-1", "temp", rng=rng, start_ms=T0)
    water = EnvSensor(SHED, "water-1", "water", rng=rng, start_ms=T0)
    sensors: list[BaySensor | EnvSensor] = [*bays, smoke, temp, water]
    produced: list[Produced] = []

    def keep(out: list[Outgoing], t: int) -> None:
        produced.extend(Produced(m, t) for m in out)

    keep([board.status_message(), board.last_will()], T0)
    bikes = {
        1: lead_acid(rng, soc=0.1),
        2: lithium(rng, soc=0.5),
        3: overdraw_charger(rng),
        4: no_taper_charger(rng),
        5: lead_acid(rng),
        6: lithium(rng),
    }
    for port, bike in bikes.items():
        keep(board.plug(port, bike, T0), T0)

    def overheat(port: int, t: int) -> list[Outgoing]:
        board.force_temp(port, 71.0)
        return board.tick(t)

    board.set_relay_fault(5, "welded")
    board.set_relay_fault(6, "open")
    script: dict[int, Callable[[int], list[Outgoing]]] = {
        1_000: lambda t: [m for p in range(1, 7) for m in board.handle(p, on(p, f"on-{p}"), t)],
        2_000: lambda t: board.handle(1, on(1, "on-1"), t),  # a retry: acked, not re-run
        3_000: lambda t: board.handle(2, b'{"id": "bad-1", "op": "blink"}', t),
        4_000: lambda t: board.tap_card(8, "04A1B2C3", t),
        5_000: lambda t: board.press_stop(1, t),
        6_000: lambda t: board.handle(5, encode_command(PortCommand(5, "off-5", "off")), t),
        60_000: lambda t: board.handle(
            1, encode_command(PortCommand(1, "renew-1", "renew", lease_s=120)), t
        ),
        61_000: lambda t: [*board.handle(9, on(9, "on-9"), t)],
        70_000: lambda t: overheat(7, t),
        80_000: lambda t: bays[0].set_occupied(True, t),
        90_000: lambda t: smoke.set_smoke(True, t),
        95_000: lambda t: temp.set_temp(62.0, t),
        97_000: lambda t: water.set_water(True, t),
        100_000: lambda t: bays[0].set_occupied(False, t),
        400_000: lambda t: board.reboot(t),
        500_000: lambda t: board.handle(2, on(2, "on-2b", lease_s=600), t),
    }
    t = T0
    while t < T0 + 900_000:
        t += 1000
        action = script.get(t - T0)
        if action is not None:
            keep(action(t), t)
        keep(board.tick(t), t)
        for sensor in sensors:
            keep(sensor.tick(t), t)
    keep(board.power_cut(t), t)
    keep(board.power_restore(t + 60_000), t + 60_000)
    return tuple(produced)


# ------------------------------------------------------------------ tests


def test_corpus_covers_every_message_kind_and_event_type() -> None:
    seen: set[str] = set()
    for p in corpus():
        kind, body = validate(p.message)
        seen.add(shape_key(kind, body))
        if kind == "env":
            seen.add(f"env:{body['kind']}:{body['alarm']}")
    expected = {"telemetry", "bay", "env"} | {f"event:{t}" for t in EVENT_TYPES}
    expected |= {"status:True", "status:False", "ack:True", "ack:False"}
    expected |= {f"env:{k}:{a}" for k in ("smoke", "temp", "water") for a in (True, False)}
    assert expected <= seen
    assert set(vector_shapes()) <= seen


def test_every_message_passes_the_strict_contract_validator() -> None:
    for p in corpus():
        validate(p.message)


def test_key_sets_and_json_types_match_the_vectors_accept_rows() -> None:
    shapes = vector_shapes()
    checked: defaultdict[str, int] = defaultdict(int)
    for p in corpus():
        kind, body = validate(p.message)
        key = shape_key(kind, body)
        if key not in shapes:
            continue  # kinds the vectors do not show are covered by the validator
        same_keys = [s for s in shapes[key] if s.keys() == body.keys()]
        assert same_keys, (p.message, shapes[key])
        row = same_keys[0]
        for field, value in body.items():
            assert compatible(field, json_type(value), row[field]), (p.message, field, row[field])
        checked[key] += 1
    assert set(checked) == set(shapes)
    assert checked["telemetry"] > 500


def test_the_project_receiver_decodes_everything_and_drops_nothing() -> None:
    codec = MqttCodec(SHED, PORTS, bays=range(1, 3))
    expected_type = {
        "telemetry": Telemetry,
        "event": PortEvent,
        "ack": CmdAck,
        "status": BoardStatus,
        "bay": BayOccupancy,
        "env": EnvReading,
    }
    for p in corpus():
        decoded = codec.decode(p.message.topic, p.message.payload, p.at_ms)
        assert not isinstance(decoded, Drop), (p.message, decoded)
        kind, body = validate(p.message)
        assert isinstance(decoded, expected_type[kind])
        if isinstance(decoded, Telemetry):
            assert (decoded.ts, decoded.seq, decoded.wh, decoded.relay) == (
                body["ts"],
                body["seq"],
                body["wh"],
                body["relay"],
            )
            assert decoded.w == body["w"]
            assert decoded.temp_c == body["temp_c"]
        elif isinstance(decoded, PortEvent):
            assert decoded.type == body["type"]
            assert decoded.card_uid == body.get("card_uid")
        elif isinstance(decoded, CmdAck):
            assert (decoded.id, decoded.ok, decoded.error) == (
                body["id"],
                body["ok"],
                body["error"],
            )


def test_per_port_samples_are_ordered_and_seq_counts_up_until_a_reboot() -> None:
    last: dict[str, dict[str, Any]] = {}
    restarts = 0
    for p in corpus():
        kind, body = validate(p.message)
        if kind != "telemetry":
            continue
        assert body["ts"] <= p.at_ms
        prev = last.get(p.message.topic)
        if prev is not None:
            assert body["ts"] >= prev["ts"]
            if body["seq"] == 0:
                restarts += 1
            else:
                assert body["seq"] == prev["seq"] + 1
            assert (body["wh"] - prev["wh"]) % 2**32 < 2**31
        last[p.message.topic] = body
    assert restarts == 2 * len(PORTS)  # the reboot and the power restore


@pytest.mark.parametrize("kind", ["telemetry", "event", "ack", "status", "bay", "env"])
def test_vectors_know_each_topic_kind_the_simulators_use(kind: str) -> None:
    lines = VECTORS.read_text(encoding="utf-8").splitlines()[1:]
    kinds = set()
    for line in lines:
        row = json.loads(line)
        try:
            kinds.add(topic_kind(row["topic"]))
        except AssertionError:
            continue
    assert kind in kinds
