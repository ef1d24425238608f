"""Contract modbus-rtu-board-v1 against its test vectors, both ways.

The bridge side (pure): it encodes the exact request and command frames,
decodes `read_sockets_response` to `decoded_sockets`, and drops every
`must_drop` frame; then the same over a pty, against a scripted slave that
answers with the vector bytes. The simulator side: a `ModbusSimBoard` put
in the vector's register state answers, over its pty, with the exact
response frames.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from dataclasses import asdict

import pytest

from controller.clock import SimClock
from firmware_bridge.messages import BoardStatus, Telemetry
from firmware_bridge.modbus_bridge import ModbusBridge, ModbusBusSettings
from firmware_bridge.modbus_codec import (
    Dropped,
    ExceptionReply,
    Reply,
    Request,
    incomplete,
    parse_response,
)
from firmware_bridge.modbus_line import ModbusConfigError
from firmware_bridge.modbus_registers import (
    CMD_OFFSET,
    BoardInfo,
    SocketState,
    card_read,
    decode_sockets,
    holding,
    socket_reads,
)
from firmware_bridge.modbus_timing import LineTiming, bits_per_char
from simulators.ebike import lead_acid, overdraw_charger
from simulators.modbus_board import ModbusSimBoard
from simulators.modbus_bus import SimModbusBus
from simulators.modbus_pty import PtyPort
from tests.test_modbus_harness import FAST, T0, VECTORS, leak_check


@pytest.fixture(autouse=True)
async def _no_leaks() -> AsyncIterator[None]:
    async with leak_check():
        yield


def frame(name: str) -> bytes:
    return bytes.fromhex(VECTORS[name])


def decoded(state: SocketState, port: int) -> dict[str, object]:
    return {
        "port": port,
        "relay": state.relay,
        "load": state.load,
        "overcurrent": state.overcurrent,
        "overtemp": state.overtemp,
        "relay_fault": state.relay_fault,
        "lease_expired": state.lease_expired,
        "v": state.v,
        "a": state.a,
        "w": state.w,
        "wh": state.wh,
        "temp_c": state.temp_c,
        "lease_s": state.lease_s,
    }


READ_SOCKETS = Request.read_input(1, 1000, 96)
READ_INFO = Request.read_input(1, 0, 6)


# --------------------------------------------------------------------------- bridge side, pure


def test_the_bridge_encodes_the_vector_requests() -> None:
    ((first, address, count),) = socket_reads(12)
    assert (first, address, count) == (0, 1000, 96)
    assert Request.read_input(1, address, count).frame() == frame("read_sockets_request")
    assert READ_INFO.frame() == frame("read_info_request")


def test_the_bridge_encodes_the_vector_commands() -> None:
    meaning = VECTORS["switch_on_port5_meaning"]
    k = meaning["port"] - 1
    on = Request.write_multiple(
        1, holding(k, CMD_OFFSET), (1, meaning["lease_s"], meaning["max_w"])
    )
    assert on.frame() == frame("switch_on_port5_request")
    off = Request.write_single(1, holding(3 - 1, CMD_OFFSET), 0)
    assert off.frame() == frame("switch_off_port3_request")
    assert parse_response(on, frame("switch_on_port5_response")) == (8, Reply())
    assert parse_response(off, frame("switch_off_port3_response")) == (8, Reply())


def test_the_bridge_decodes_the_vector_sockets() -> None:
    data = frame("read_sockets_response")
    used, outcome = parse_response(READ_SOCKETS, data)
    assert used == len(data)
    assert isinstance(outcome, Reply)
    states = decode_sockets(outcome.registers)
    assert [decoded(s, k + 1) for k, s in enumerate(states)] == VECTORS["decoded_sockets"]
    assert [s.registers() for s in states] == [
        list(outcome.registers[i : i + 8]) for i in range(0, 96, 8)
    ]


def test_the_bridge_decodes_the_vector_info() -> None:
    _, outcome = parse_response(READ_INFO, frame("read_info_response"))
    assert isinstance(outcome, Reply)
    info = BoardInfo.from_registers(outcome.registers)
    assert asdict(info) == {
        "map_version": 1,
        "sockets": 12,
        "firmware": "1.04",
        "board_temp_c": 31.2,
        "uptime_s": 86400,
    }
    assert asdict(info) == {**VECTORS["decoded_info"], "map_version": 1}


@pytest.mark.parametrize(
    ("why", "reason"),
    [
        ("bad CRC", "bad_crc"),
        ("truncated", "wrong_length"),
        ("wrong slave", "wrong_slave"),
        ("exception", None),
    ],
)
def test_the_bridge_drops_the_vector_must_drop_frames(why: str, reason: str | None) -> None:
    (case,) = [c for c in VECTORS["must_drop"] if why in c["why"]]
    data = bytes.fromhex(case["frame"])
    used, outcome = parse_response(READ_SOCKETS, data)
    if why == "truncated":
        assert (used, outcome) == (0, None)  # not complete: when its time is up ...
        outcome = incomplete(data)  # ... it is dropped for its length
    if reason is None:
        assert outcome == ExceptionReply(2)
        assert outcome.error == "illegal_address"
    else:
        assert isinstance(outcome, Dropped)
        assert outcome.reason == reason


def test_a_sound_frame_of_the_wrong_length_or_function_is_dropped() -> None:
    data = frame("read_sockets_response")
    _, outcome = parse_response(Request.read_input(1, 1000, 95), data)
    assert isinstance(outcome, Dropped)
    assert outcome.reason == "wrong_length"
    _, outcome = parse_response(Request.read_holding(1, 1000, 96), data)
    assert isinstance(outcome, Dropped)
    assert outcome.reason == "mismatch"
    off = Request.write_single(1, 2008, 0)
    _, outcome = parse_response(off, Request.write_single(1, 2008, 1).frame())
    assert isinstance(outcome, Dropped)
    assert outcome.reason == "mismatch"


def test_wire_time_of_one_read_matches_the_vector() -> None:
    timing = LineTiming(9600, bits_per_char("E", 1))
    assert timing.bits_per_char == 11
    assert bits_per_char("N", 2) == bits_per_char("O", 1) == 11
    ms = timing.exchange_s(len(frame("read_sockets_request")), len(frame("read_sockets_response")))
    assert round(ms * 1000, 1) == VECTORS["wire_time_9600_8E1_ms"]


def test_register_plan_of_a_board() -> None:
    assert socket_reads(16) == [(0, 1000, 120), (15, 1120, 8)]  # 125 registers at most
    assert card_read(12) == (2003, 45)
    with pytest.raises(ValueError, match="sockets"):
        socket_reads(17)


def test_bus_settings_are_checked() -> None:
    good = {"device": "/dev/ttyUSB0", "boards": {1: ("b1", (1, 2))}}
    ModbusBusSettings(**good)  # type: ignore[arg-type]
    bad: list[dict[str, object]] = [
        {"baud": 4800},
        {"parity": "X"},
        {"stopbits": 3},
        {"retries": 3},
        {"boards": {}},
        {"boards": {0: ("b1", (1,))}},
        {"boards": {1: ("B 1", (1,))}},
        {"boards": {1: ("b1", (1,)), 2: ("b2", (1,))}},
        {"boards": {1: ("b1", tuple(range(1, 18)))}},
        {"timeout_s": 0},
    ]
    for change in bad:
        with pytest.raises(ModbusConfigError) as err:
            ModbusBusSettings(**{**good, **change})  # type: ignore[arg-type]
        assert err.value.code == "invalid_bus"


# --------------------------------------------------------------------------- bridge side, on a pty


async def _scripted_slave(port: PtyPort, answers: list[bytes], served: list[bytes]) -> None:
    """Answer each socket read with the next scripted frame, the info read with the vector."""
    buf = b""
    loop = asyncio.get_running_loop()
    while True:
        ready = asyncio.Event()
        loop.add_reader(port.master_fd, ready.set)
        try:
            await ready.wait()
        finally:
            loop.remove_reader(port.master_fd)
        buf += os.read(port.master_fd, 4096)
        while len(buf) >= 8 and buf[1] in (3, 4):
            request, buf = buf[:8], buf[8:]
            served.append(request)
            if request == frame("read_info_request"):
                os.write(port.master_fd, frame("read_info_response"))
            elif request == frame("read_sockets_request") and answers:
                os.write(port.master_fd, answers.pop(0))


async def test_over_a_pty_the_bridge_drops_must_drop_frames_and_uses_the_good_one() -> None:
    bad = [bytes.fromhex(c["frame"]) for c in VECTORS["must_drop"]]
    answers = [*bad, frame("read_sockets_response")]
    served: list[bytes] = []
    msgs: list[object] = []
    got_telemetry = asyncio.Event()

    def sink(msg: object) -> None:
        msgs.append(msg)
        if isinstance(msg, Telemetry):
            got_telemetry.set()

    port = PtyPort.open()
    slave = asyncio.create_task(_scripted_slave(port, answers, served))
    settings = ModbusBusSettings(
        port.path,
        **{**FAST, "retries": 2, "card_every_cycles": 0},
        boards={1: ("b1", tuple(range(1, 13)))},
    )
    try:
        async with ModbusBridge(settings, SimClock(T0), sink) as bridge:
            async with asyncio.timeout(5):
                await got_telemetry.wait()
            counts = bridge.counters()
    finally:
        slave.cancel()
        await asyncio.gather(slave, return_exceptions=True)
        port.close()
    assert served[0] == frame("read_info_request")
    assert set(served[1:]) == {frame("read_sockets_request")}
    assert counts["dropped.bad_crc"] == 1
    assert counts["dropped.wrong_length"] == 1
    assert counts["dropped.wrong_slave"] == 1
    assert counts["exceptions"] == 1
    samples = [m for m in msgs if isinstance(m, Telemetry)]
    assert [(t.port, t.v, t.a, t.w, t.wh, t.relay, t.temp_c) for t in samples] == [
        (d["port"], d["v"], d["a"], d["w"], d["wh"], d["relay"], d["temp_c"])
        for d in VECTORS["decoded_sockets"]
    ]
    assert msgs[0] == BoardStatus("b1", True, "1.04", tuple(range(1, 13)), T0)


# --------------------------------------------------------------------------- simulator side


def vector_board(clock: SimClock) -> ModbusSimBoard:
    """A 12-socket board at slave 1, up for a day, in the register state of `decoded_sockets`."""
    rng = random.Random(5)
    now = clock.now_ms()
    board = ModbusSimBoard(1, 12, rng=rng, start_ms=now - 86_400_000, board_temp_c=31.2)
    for k in range(12):
        board.force_reading(k, v=230.0)
    # port 8: a faulty charger that tripped on max_w, still plugged in
    board.plug(7, overdraw_charger(rng), now - 60_000)
    assert board.write(holding(7, 0), [1, 300, 1000], now - 60_000) is None
    board.force_reading(7, v=229.1)
    board.model.force_temp(8, 41.2)
    # port 3: a bike charging, on for 13 s of a 300 s lease
    board.plug(2, lead_acid(rng, soc=0.3), now - 13_000)
    assert board.write(holding(2, 0), [1, 300, 1000], now - 13_000) is None
    board.force_reading(2, v=228.6, a=1.01, w=231.4)
    board.model.force_temp(3, 36.5)
    board.model.force_temp(11, -5.5)
    board.tick(now)
    for k, wh in enumerate(d["wh"] for d in VECTORS["decoded_sockets"]):
        board.model.set_register(k + 1, wh)
    return board


async def _ask(path: str, request: bytes, length: int) -> bytes:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        os.write(fd, request)
        answer = b""
        async with asyncio.timeout(2):
            while len(answer) < length:
                await asyncio.sleep(0.002)
                try:
                    answer += os.read(fd, 4096)
                except BlockingIOError:
                    continue
        return answer
    finally:
        os.close(fd)


async def test_the_simulator_answers_with_the_vector_frames() -> None:
    clock = SimClock(T0)
    board = vector_board(clock)
    assert board.relay(2) and not board.relay(7)
    async with SimModbusBus([board], clock, baud=115200) as bus:
        for request, response in [
            ("read_sockets_request", "read_sockets_response"),
            ("read_info_request", "read_info_response"),
            ("switch_on_port5_request", "switch_on_port5_response"),
            ("switch_off_port3_request", "switch_off_port3_response"),
        ]:
            answer = await _ask(bus.device, frame(request), len(frame(response)))
            assert answer.hex() == VECTORS[response], request
    assert board.relay(4) and board.holding(4)[:3] == (1, 300, 1000)
    assert not board.relay(2)
