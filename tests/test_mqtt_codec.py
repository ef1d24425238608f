"""The MQTT codec against the contract's test vectors, plus its edge cases. No broker."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.messages import (
    BayOccupancy,
    BoardStatus,
    CmdAck,
    EnvReading,
    PortCommand,
    PortEvent,
    Telemetry,
)
from firmware_bridge.mqtt_codec import (
    Drop,
    DropCounters,
    MqttCodec,
    Topics,
    _Bad,
    encode_command,
    encode_controller_status,
    encode_port_state,
)

VECTORS = Path(__file__).parent / "fixtures" / "contracts" / "mqtt-device-v1.jsonl"
_LINES = VECTORS.read_text(encoding="utf-8").splitlines()
NOW = int(re.search(r"clock at ts (\d+)", json.loads(_LINES[0])["note"]).group(1))  # type: ignore[union-attr]
ROWS = [json.loads(line) for line in _LINES[1:] if line.strip()]
TS = 1795341000000
T3 = "ebs/v1/demo-1/port/3/telemetry"


def _sample(**kw: object) -> Telemetry:
    base: dict[str, Any] = {
        "port": 3,
        "ts": TS,
        "seq": 812,
        "v": 229.8,
        "a": 1.23,
        "w": 282.1,
        "wh": 1234567,
        "relay": True,
        "temp_c": 31.5,
    }
    base.update(kw)
    return Telemetry(**base)


# What each vector row must decode to, keyed by its `why`.
ACCEPTED: dict[str, object] = {
    "a complete sample": _sample(),
    "temp_c is optional": _sample(temp_c=None),
    "unknown fields are ignored": _sample(),
    "largest register value": _sample(wh=4294967295),
    "register and seq at zero": _sample(seq=0, wh=0),
    "relay off, no power": _sample(a=0.0, w=0.0, relay=False),
    "integer where a number is expected": _sample(w=0.0),
    "card tap": PortEvent(3, TS, "card", card_uid="04A1B2C3"),
    "over-current event": PortEvent(3, TS, "overcurrent"),
    "bay occupied": BayOccupancy(2, TS, True, 3.61),
    "smoke alarm": EnvReading("smoke-1", TS, "smoke", 0.0, True),
    "board last will": BoardStatus("b1", False),
    "command ack (matched to a sent command, else counted as unexpected)": CmdAck(
        3, "c1", True, True, None
    ),
}
DROPPED: dict[str, str] = {
    "not JSON": "not_json",
    "JSON but not an object": "not_object",
    "empty payload": "not_json",
    "not UTF-8 (raw bytes in payload_hex)": "not_utf8",
    "missing wh": "missing_field",
    "missing ts": "missing_field",
    "missing relay": "missing_field",
    "wh as a string": "wrong_type",
    "wh not an integer": "wrong_type",
    "negative register": "out_of_range",
    "register beyond u32": "out_of_range",
    "relay as a string": "wrong_type",
    "relay as a number": "wrong_type",
    "voltage above 300": "out_of_range",
    "negative voltage": "out_of_range",
    "power above 5000 W": "out_of_range",
    "negative power": "out_of_range",
    "power null": "wrong_type",
    "negative seq": "out_of_range",
    "more than 5 minutes in the future": "future_ts",
    "ts as a string": "wrong_type",
    "port not configured in this shed (ports 1..12)": "unknown_port",
    "port 0 does not exist": "unknown_port",
    "port is not a number": "bad_topic",
    "another shed's topic (the controller should not even subscribe to it)": "other_shed",
    "card tap without uid": "missing_field",
    "card uid not hex": "bad_card_uid",
    "unknown event type": "unknown_event_type",
    "occupied as a string": "wrong_type",
    "env without value": "missing_field",
    "oversized payload (over 64 KiB)": "too_large",
}


@pytest.fixture
def codec() -> MqttCodec:
    return MqttCodec("demo-1", range(1, 13))


def _payload(row: dict[str, Any]) -> bytes:
    if row["payload"] is None:
        return bytes.fromhex(row["payload_hex"])
    return str(row["payload"]).encode("utf-8")


def test_vectors_clock_and_coverage() -> None:
    assert NOW == TS
    assert len(ROWS) == len(ACCEPTED) + len(DROPPED)
    assert {r["why"] for r in ROWS if r["expect"] == "accept"} == set(ACCEPTED)
    assert {r["why"] for r in ROWS if r["expect"] == "drop"} == set(DROPPED)


@pytest.mark.parametrize("row", ROWS, ids=[r["why"] for r in ROWS])
def test_vector(codec: MqttCodec, row: dict[str, Any]) -> None:
    result = codec.decode(row["topic"], _payload(row), NOW)
    if row["expect"] == "accept":
        assert result == ACCEPTED[row["why"]]
    else:
        assert isinstance(result, Drop)
        assert result.reason == DROPPED[row["why"]], result.detail


def test_accepted_numbers_are_floats(codec: MqttCodec) -> None:
    msg = codec.decode(T3, b'{"ts":1,"seq":1,"v":230,"a":0,"w":0,"wh":1,"relay":false}', NOW)
    assert isinstance(msg, Telemetry)
    assert (type(msg.v), type(msg.a), type(msg.w)) == (float, float, float)


# --------------------------------------------------------------------------- edge cases


def _tele(**kw: object) -> bytes:
    body: dict[str, object] = {
        "ts": TS,
        "seq": 812,
        "v": 229.8,
        "a": 1.23,
        "w": 282.1,
        "wh": 1234567,
        "relay": True,
    }
    body.update(kw)
    return json.dumps(body).encode()


def _reason(codec: MqttCodec, topic: str, payload: bytes) -> str | None:
    result = codec.decode(topic, payload, NOW)
    return result.reason if isinstance(result, Drop) else None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ts", True),
        ("seq", False),
        ("wh", True),
        ("v", True),
        ("a", False),
        ("w", True),
        ("temp_c", True),
        ("relay", 1),
        ("relay", 0),
        ("relay", "true"),
        ("relay", None),
        ("ts", float(TS)),
        ("seq", 1.0),
        ("wh", 12.0),
        ("wh", 12.5),
        ("v", "230"),
        ("temp_c", None),
        ("temp_c", "31"),
    ],
)
def test_telemetry_wrong_types(codec: MqttCodec, field: str, value: object) -> None:
    assert _reason(codec, T3, _tele(**{field: value})) == "wrong_type"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("ts", TS + 300_000, None),  # exactly 5 minutes ahead is still fine
        ("ts", TS + 300_001, "future_ts"),
        ("ts", 0, None),  # old samples are the metering's business
        ("ts", -1, "out_of_range"),
        ("ts", 2**53 + 1, "out_of_range"),
        ("seq", 2**32 - 1, None),
        ("seq", 2**32, "out_of_range"),
        ("v", 0, None),
        ("v", 300, None),
        ("w", 5000, None),
        ("a", -0.01, "out_of_range"),
        ("a", 1e300, None),
        ("temp_c", -40, None),
    ],
)
def test_telemetry_ranges(codec: MqttCodec, field: str, value: object, reason: str | None) -> None:
    assert _reason(codec, T3, _tele(**{field: value})) == reason


@pytest.mark.parametrize(
    "payload",
    [
        _tele().replace(b"229.8", b"NaN"),
        _tele().replace(b"229.8", b"Infinity"),
        _tele().replace(b"1.23", b"-Infinity"),
        b"[" * 60_000,  # nesting deep enough to break a recursive parser
        b'{"ts": ' + b"1" * 5000 + b"}",  # more digits than int() takes
        b"\xef\xbb\xbf" + _tele(),  # UTF-8 byte order mark
        _tele().decode().encode("utf-16"),  # valid JSON, wrong encoding
    ],
)
def test_not_json_or_not_utf8(codec: MqttCodec, payload: bytes) -> None:
    assert _reason(codec, T3, payload) in {"not_json", "not_utf8"}


def test_huge_numbers_are_out_of_range(codec: MqttCodec) -> None:
    assert _reason(codec, T3, _tele(a=0).replace(b'"a": 0', b'"a": 1e400')) == "out_of_range"
    env = b'{"ts": 1, "kind": "temp", "value": ' + b"9" * 400 + b', "alarm": false}'
    assert _reason(codec, "ebs/v1/demo-1/env/t-1", env) == "out_of_range"


def test_payload_limit_is_64_kib(codec: MqttCodec) -> None:
    body = _tele()
    exact = body[:-1] + b" " * (64 * 1024 - len(body)) + b"}"
    assert len(exact) == 64 * 1024
    assert isinstance(codec.decode(T3, exact, NOW), Telemetry)
    assert _reason(codec, T3, exact[:-1] + b" }") == "too_large"


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("ebs/v1/demo-10/port/3/telemetry", "other_shed"),
        ("ebs/v1/demo/port/3/telemetry", "other_shed"),
        ("ebs/v2/demo-1/port/3/telemetry", "bad_topic"),
        ("", "bad_topic"),
        ("ebs/v1/demo-1/port/03/telemetry", "bad_topic"),
        ("ebs/v1/demo-1/port/+3/telemetry", "bad_topic"),
        ("ebs/v1/demo-1/port/\u0663/telemetry", "bad_topic"),  # Arabic-Indic digit three
        ("ebs/v1/demo-1/port/1000/telemetry", "bad_topic"),
        ("ebs/v1/demo-1/port/3/cmd", "bad_topic"),  # the controller's own topics
        ("ebs/v1/demo-1/port/3/state", "bad_topic"),
        ("ebs/v1/demo-1/controller/status", "bad_topic"),
        ("ebs/v1/demo-1/port/3/telemetry/x", "bad_topic"),
        ("ebs/v1/demo-1/port/3", "bad_topic"),
        ("ebs/v1/demo-1/port/12/telemetry", None),
    ],
)
def test_topics(codec: MqttCodec, topic: str, reason: str | None) -> None:
    assert _reason(codec, topic, _tele()) == reason


def test_events(codec: MqttCodec) -> None:
    topic = "ebs/v1/demo-1/port/3/event"

    def ev(body: dict[str, object]) -> object:
        return codec.decode(topic, json.dumps({"ts": TS, **body}).encode(), NOW)

    assert ev({"type": "card", "card_uid": "04a1b2c3"}) == PortEvent(3, TS, "card", "04A1B2C3")
    assert ev({"type": "card", "card_uid": "0" * 20}) == PortEvent(3, TS, "card", "0" * 20)
    for uid in ("04A", "0" * 21, "04A1 B2", "", "04A1B2C3\n"):
        assert ev({"type": "card", "card_uid": uid}) == Drop(
            "bad_card_uid", "card_uid must be 4-20 hex digits"
        )
    assert isinstance(ev({"type": "card", "card_uid": 4660}), Drop)
    assert ev({"type": "button", "action": "stop"}) == PortEvent(3, TS, "button", action="stop")
    assert ev({"type": "lease_expired", "card_uid": "zz"}) == PortEvent(3, TS, "lease_expired")
    assert ev({"type": 3}) == Drop("wrong_type", "type must be a string")
    # A board with a wrong clock still reports its trips: future ts applies to samples only.
    assert ev({"type": "overcurrent", "ts": TS + 10**9}) == PortEvent(3, TS + 10**9, "overcurrent")


def test_ack_board_bay_env(codec: MqttCodec) -> None:
    ack = "ebs/v1/demo-1/port/3/cmd/ack"
    assert codec.decode(ack, b'{"id":"c1","ok":false,"relay":false,"error":"fault"}', NOW) == (
        CmdAck(3, "c1", False, False, "fault")
    )
    assert codec.decode(ack, b'{"id":"c1","ok":true,"relay":true}', NOW) == CmdAck(
        3, "c1", True, True
    )
    assert _reason(codec, ack, b'{"id":"c1","ok":1,"relay":true}') == "wrong_type"
    assert _reason(codec, ack, b'{"id":7,"ok":true,"relay":true}') == "wrong_type"
    assert _reason(codec, ack, b'{"id":"c1","ok":true,"relay":true,"error":5}') == "wrong_type"

    status = "ebs/v1/demo-1/board/b-1/status"
    full = b'{"online":true,"fw":"1.4.2","ports":[1,2,3],"ts":1795341000000}'
    assert codec.decode(status, full, NOW) == BoardStatus("b-1", True, "1.4.2", (1, 2, 3), TS)
    assert _reason(codec, status, b'{"online":true,"ports":[1,true]}') == "wrong_type"
    assert _reason(codec, status, b'{"online":true,"ports":[0]}') == "out_of_range"
    assert _reason(codec, status, b'{"online":"true"}') == "wrong_type"
    assert _reason(codec, "ebs/v1/demo-1/board/B1/status", b'{"online":true}') == "bad_topic"

    bay = b'{"ts":1795341000000,"occupied":false}'
    assert codec.decode("ebs/v1/demo-1/bay/7/occupancy", bay, NOW) == BayOccupancy(7, TS, False)
    assert _reason(codec, "ebs/v1/demo-1/bay/0/occupancy", bay) == "unknown_bay"
    assert _reason(codec, "ebs/v1/demo-1/bay/07/occupancy", bay) == "bad_topic"
    with_bays = MqttCodec("demo-1", range(1, 13), bays={1, 2})
    assert _reason(with_bays, "ebs/v1/demo-1/bay/7/occupancy", bay) == "unknown_bay"
    assert _reason(with_bays, "ebs/v1/demo-1/bay/2/occupancy", bay) is None

    env = "ebs/v1/demo-1/env/water-1"
    assert _reason(codec, env, b'{"ts":1,"kind":"fire","value":1,"alarm":true}') == "unknown_kind"
    assert _reason(codec, env, b'{"ts":1,"kind":"water","value":true,"alarm":true}') == (
        "wrong_type"
    )
    assert _reason(codec, "ebs/v1/demo-1/env/Water", b"{}") == "bad_topic"


def test_codec_configuration_is_checked() -> None:
    for shed in ("", "Demo", "a/b", "a+", "#", "x" * 33, "demo 1"):
        with pytest.raises(ValueError, match="shed id"):
            MqttCodec(shed, range(1, 13))
    with pytest.raises(ValueError, match="ports"):
        MqttCodec("demo-1", range(13))
    with pytest.raises(ValueError, match="bays"):
        MqttCodec("demo-1", range(1, 13), bays={0})


# --------------------------------------------------------------------------- topics and encoders


def test_topic_helpers() -> None:
    t = Topics("demo-1")
    assert t.command(3) == "ebs/v1/demo-1/port/3/cmd"
    assert t.port_state(3) == "ebs/v1/demo-1/port/3/state"
    assert t.controller_status() == "ebs/v1/demo-1/controller/status"
    assert t.all_filter() == "ebs/v1/demo-1/#"
    subs = dict(t.subscriptions())
    assert subs == {
        "ebs/v1/demo-1/board/+/status": 1,
        "ebs/v1/demo-1/port/+/telemetry": 0,
        "ebs/v1/demo-1/port/+/event": 1,
        "ebs/v1/demo-1/port/+/cmd/ack": 1,
        "ebs/v1/demo-1/bay/+/occupancy": 1,
        "ebs/v1/demo-1/env/+": 1,
    }
    codec = MqttCodec("demo-1", range(1, 13))
    assert codec.decode(t.telemetry(3), _tele(), NOW) == _sample(temp_c=None)
    assert isinstance(codec.decode(t.event(3), b'{"ts":1,"type":"overtemp"}', NOW), PortEvent)
    assert isinstance(
        codec.decode(t.command_ack(3), b'{"id":"x","ok":true,"relay":true}', 0), CmdAck
    )
    assert isinstance(codec.decode(t.board_status("b1"), b'{"online":true}', 0), BoardStatus)
    assert isinstance(
        codec.decode(t.bay_occupancy(1), b'{"ts":1,"occupied":true}', 0), BayOccupancy
    )
    assert isinstance(
        codec.decode(t.env("s1"), b'{"ts":1,"kind":"temp","value":1.5,"alarm":false}', 0),
        EnvReading,
    )


@pytest.mark.parametrize(
    ("cmd", "expected"),
    [
        (
            PortCommand(3, "c-1", "on", lease_s=900, max_w=1000),
            {"id": "c-1", "op": "on", "lease_s": 900, "max_w": 1000},
        ),
        (PortCommand(3, "c-2", "renew", lease_s=900), {"id": "c-2", "op": "renew", "lease_s": 900}),
        (PortCommand(3, "c-3", "off"), {"id": "c-3", "op": "off"}),
        (PortCommand(3, "c-4", "off", lease_s=900, max_w=5), {"id": "c-4", "op": "off"}),
        (
            PortCommand(3, "c-5", "renew", lease_s=60, max_w=5),
            {"id": "c-5", "op": "renew", "lease_s": 60},
        ),
    ],
)
def test_encode_command(cmd: PortCommand, expected: dict[str, object]) -> None:
    wire = encode_command(cmd)
    assert json.loads(wire) == expected
    assert b" " not in wire


@pytest.mark.parametrize(
    "cmd",
    [
        PortCommand(3, "c", "on", lease_s=900),
        PortCommand(3, "c", "on", max_w=1000),
        PortCommand(3, "c", "renew"),
        PortCommand(3, "c", "renew", lease_s=0),
        PortCommand(3, "c", "on", lease_s=True, max_w=1000),
        PortCommand(3, "", "off"),
        PortCommand(3, "c", "reboot"),  # type: ignore[arg-type]
    ],
)
def test_encode_command_refuses_what_the_contract_cannot_carry(cmd: PortCommand) -> None:
    with pytest.raises(ValueError, match=r"."):
        encode_command(cmd)


def test_encode_status_and_state() -> None:
    assert encode_controller_status(False) == b'{"online":false}'
    assert json.loads(encode_controller_status(True, "1.2.0", TS)) == {
        "online": True,
        "version": "1.2.0",
        "ts": TS,
    }
    assert json.loads(encode_port_state("charging", "s-1", 280, 412, TS)) == {
        "state": "charging",
        "session": "s-1",
        "w": 280.0,
        "session_wh": 412,
        "since": TS,
    }
    assert json.loads(encode_port_state("idle", None, 0.0, 0, TS))["session"] is None


# --------------------------------------------------------------------------- drop accounting


def test_drop_counters_rate_limit_per_topic() -> None:
    c = DropCounters()
    drop = Drop("not_json", "x")
    assert c.record(drop, "t/a", 0) is True
    assert c.record(drop, "t/a", 59_999) is False
    assert c.record(drop, "t/b", 59_999) is True  # another topic has its own minute
    assert c.record(Drop("wrong_type", "x"), "t/a", 60_000) is True
    assert c.record(drop, "t/a", 60_001) is False
    assert c.by_reason == {"not_json": 4, "wrong_type": 1}
    assert c.total == 5


def test_drop_counters_memory_is_bounded() -> None:
    c = DropCounters(max_topics=3)
    assert [c.should_log(f"t/{i}", 0) for i in range(5)] == [True, True, True, False, False]
    assert c.should_log("t/9", 60_001) is True  # old entries pruned, logging resumes
    assert len(c._last_logged) <= 3


# --------------------------------------------------------------------------- properties

_json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
_field_names = st.sampled_from(
    ["ts", "seq", "v", "a", "w", "wh", "relay", "temp_c", "type", "card_uid", "id", "ok", "online",
     "ports", "occupied", "kind", "value", "alarm", "error", "action", "fw", "battery_v"]
)  # fmt: skip
_topics = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda kind, key, tail: f"ebs/v1/demo-1/{kind}/{key}{tail}",
        st.sampled_from(["port", "bay", "board", "env", "controller"]),
        st.sampled_from(["3", "0", "13", "b1", "x", "", "1000", "03"]),
        st.sampled_from(["/telemetry", "/event", "/cmd/ack", "/status", "/occupancy", "", "/"]),
    ),
)


@settings(max_examples=400, deadline=None)
@given(topic=_topics, payload=st.binary(max_size=200), now=st.integers(-(2**60), 2**60))
def test_decode_never_raises_on_bytes(topic: str, payload: bytes, now: int) -> None:
    result = MqttCodec("demo-1", range(1, 13)).decode(topic, payload, now)
    assert isinstance(
        result, (Drop, Telemetry, PortEvent, CmdAck, BoardStatus, BayOccupancy, EnvReading)
    )


@settings(max_examples=400, deadline=None)
@given(topic=_topics, body=st.dictionaries(_field_names, _json_values, max_size=10))
def test_decode_never_raises_on_json_objects(topic: str, body: dict[str, object]) -> None:
    payload = json.dumps(body).encode()
    result = MqttCodec("demo-1", range(1, 13)).decode(topic, payload, NOW)
    if isinstance(result, Telemetry):  # whatever is accepted honours the contract
        assert 0 <= result.v <= 300
        assert 0 <= result.w <= 5000
        assert result.a >= 0
        assert 0 <= result.wh < 2**32
        assert 0 <= result.seq < 2**32
        assert type(result.relay) is bool
        assert result.ts - NOW <= 300_000


# --------------------------------------------------------------------------- fast path

_TELEMETRY_FIELDS = ["ts", "seq", "v", "a", "w", "wh", "relay", "temp_c"]
_numbers = st.one_of(
    st.integers(-3, 3),
    st.integers(0, 2**32 + 1),
    st.integers(2**53 - 2, 2**53 + 2),
    st.integers(-(2**70), 2**70),
    st.floats(),  # NaN and infinities too: json.dumps writes them as bare words
    st.floats(-1.0, 6000.0),
    st.sampled_from([-0.0, 300.0, 300.00000000000006, 5000.0, 5000.000000000001, 5e-324]),
)
_literals = st.one_of(
    (_numbers | st.booleans() | st.none() | st.text(max_size=4)).map(json.dumps),
    st.lists(st.integers(-2, 2), max_size=2).map(json.dumps),
    # Number spellings json.dumps never writes, and the clock edge of `ts`.
    st.sampled_from(
        ["1e3", "1E+2", "-0", "0.0", "2.5e2", "1e400", "-1e400", "1" * 30, "9" * 400, "0.1e1",
         str(NOW + 300_000), str(NOW + 300_001), str(NOW)]
    ),
)  # fmt: skip
_MISSING = "(missing)"
_ULP = {300.0: 300.00000000000006, 5000.0: 5000.000000000001}  # the next float up
_BOUNDS: dict[str, list[str]] = {  # each field's edges, as JSON
    "ts": ["-1", "0", str(2**53), str(2**53 + 1), str(NOW + 300_000), str(NOW + 300_001)],
    "seq": ["-1", "0", str(2**32 - 1), str(2**32)],
    "wh": ["-1", "0", str(2**32 - 1), str(2**32), str(2**64)],
    "v": ["-0.0", "-5e-324", "300", "300.0", repr(_ULP[300.0]), "300.1", "3e2"],
    "a": ["-0.0", "-5e-324", "0", "1.7976931348623157e308", "1e309"],
    "w": ["-0.0", "-1", "5000", repr(_ULP[5000.0]), "5e3", "5001"],
    "relay": ["true", "false", "0", "1", '"true"', "null"],
    "temp_c": ["-273.15", "null", "-1e308", "1e309", str(2**64)],
}


@st.composite
def _telemetry_payloads(draw: st.DrawFn) -> tuple[bytes, bool]:
    """Mostly valid samples with some fields changed, dropped, doubled or reordered."""
    fields = {
        "ts": str(NOW), "seq": "812", "v": "229.8", "a": "1.23", "w": "282.1",
        "wh": "1234567", "relay": "true", "temp_c": "31.5",
    }  # fmt: skip
    edged = draw(st.sampled_from(_TELEMETRY_FIELDS))  # one field at one of its edges
    fields[edged] = draw(st.sampled_from(_BOUNDS[edged]))
    for name in draw(st.sets(st.sampled_from(_TELEMETRY_FIELDS), max_size=2)):
        fields[name] = draw(st.one_of(_literals, st.just(_MISSING)))
    pairs = [(json.dumps(k), v) for k, v in fields.items() if v != _MISSING]
    extra = draw(st.lists(st.tuples(st.text(max_size=5).map(json.dumps), _literals), max_size=3))
    doubled = draw(
        st.lists(st.tuples(st.sampled_from(_TELEMETRY_FIELDS).map(json.dumps), _literals),
                 max_size=2)
    )  # fmt: skip
    pairs = draw(st.permutations(pairs + extra)) + doubled
    sep = draw(st.sampled_from([",", ", ", " ,\n"]))
    keys = [json.loads(k) for k, _ in pairs]
    return ("{" + sep.join(f"{k}:{v}" for k, v in pairs) + "}").encode(), len(set(keys)) < len(keys)


def _field_reader(codec: MqttCodec, payload: bytes) -> Telemetry | None:
    """The field-by-field reader alone (the fast path is bypassed)."""
    try:
        msg = codec._decode(T3, payload, NOW)
    except _Bad:
        return None
    assert isinstance(msg, Telemetry)
    return msg


@settings(max_examples=800, deadline=None)
@given(case=_telemetry_payloads())
def test_fast_path_and_field_reader_agree(case: tuple[bytes, bool]) -> None:
    payload, doubled_keys = case
    codec = MqttCodec("demo-1", range(1, 13))
    fast, precise = codec._fast_telemetry(3, payload, NOW), _field_reader(codec, payload)
    decoded = codec.decode(T3, payload, NOW)
    assert decoded == precise if precise is not None else isinstance(decoded, Drop)
    if doubled_keys:  # msgspec checks every copy of a key, the reader only the last
        assert fast is None or fast == precise
    else:
        assert fast == precise  # the same sample, or both refuse it
    if fast is not None:
        assert (type(fast.v), type(fast.a), type(fast.w)) == (float, float, float)
        assert type(fast.temp_c) in (float, type(None))


@pytest.mark.parametrize(
    "payload",
    [
        _tele(x=[[[[]]]], y={"z": None}),
        _tele(ts=NOW + 300_000),
        _tele(temp_c=10**30),  # an integer where a number is expected
        _tele().replace(b"229.8", b"2.298e2"),
    ],
)
def test_fast_path_takes_every_valid_sample(codec: MqttCodec, payload: bytes) -> None:
    assert codec._fast_telemetry(3, payload, NOW) == _field_reader(codec, payload) is not None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (_tele()[:-1] + b', "x": "\xed\xa0\x80"}', "not_utf8"),  # an encoded surrogate
        (_tele()[:-1] + b', "x": "\xff"}', "not_utf8"),
        (_tele(temp_c=None), "wrong_type"),
        (_tele(ts=NOW + 300_001), "future_ts"),
        (_tele()[:-1] + b', "x": NaN}', "not_json"),
        (_tele()[:-1] + b', "x": [' + b"[" * 5000 + b"]" * 5000 + b"]}", "not_json"),
    ],
)
def test_fast_path_refusals_get_their_reason(codec: MqttCodec, payload: bytes, reason: str) -> None:
    assert codec._fast_telemetry(3, payload, NOW) is None
    assert _reason(codec, T3, payload) == reason


def test_what_the_fast_path_passes_on_is_still_delivered(codec: MqttCodec) -> None:
    payload = _tele(x="\ud800")  # an escaped lone surrogate: JSON, but msgspec refuses it
    assert codec._fast_telemetry(3, payload, NOW) is None
    assert codec.decode(T3, payload, NOW) == _sample(temp_c=None)


def test_unknown_fields_are_skipped_not_converted(codec: MqttCodec) -> None:
    # More digits than Python's int() takes, in a field the contract says to ignore.
    payload = _tele()[:-1] + b', "x": ' + b"9" * 5000 + b"}"
    assert codec.decode(T3, payload, NOW) == _sample(port=3, ts=TS, temp_c=None)
