"""The simulated RS-485 board (pure, time passed in) and the simulated wire (pty, real time)."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.clock import SimClock
from firmware_bridge.modbus_codec import Request
from simulators.ebike import lead_acid, overdraw_charger
from simulators.modbus_board import (
    DEVICE_FAILURE,
    ILLEGAL_ADDRESS,
    ILLEGAL_VALUE,
    ModbusSimBoard,
)
from simulators.modbus_bus import SimModbusBus
from tests.test_modbus_harness import T0, leak_check

U32 = 2**32
RELAY, LOAD, OVERCURRENT, OVERTEMP, RELAY_FAULT, LEASE_EXPIRED = 1, 2, 4, 8, 16, 32


@pytest.fixture(autouse=True)
async def _no_leaks() -> AsyncIterator[None]:
    async with leak_check():
        yield


def board(sockets: int = 4, **kw: object) -> ModbusSimBoard:
    return ModbusSimBoard(3, sockets, rng=random.Random(11), start_ms=T0, **kw)  # type: ignore[arg-type]


def socket(b: ModbusSimBoard, k: int, t: int) -> list[int]:
    regs = b.read_input(1000 + 8 * k, 8, t)
    assert isinstance(regs, list)
    return regs


def on(b: ModbusSimBoard, k: int, t: int, lease_s: int = 300, max_w: int = 1000) -> None:
    assert b.write(2000 + 4 * k, [1, lease_s, max_w], t) is None


def test_info_registers() -> None:
    b = board(fw=213, board_temp_c=-3.5)
    assert b.read_input(0, 6, T0 + 70_000_000) == [1, 4, 213, 0xFFDD, 1, 70_000 - 65536]


def test_on_applies_lease_and_max_power_then_the_lease_runs_out() -> None:
    b = board()
    b.plug(1, lead_acid(random.Random(1), soc=0.2), T0)
    on(b, 1, T0, lease_s=5)
    assert b.holding(1) == (1, 5, 1000, 0)
    regs = socket(b, 1, T0 + 2_000)
    assert regs[0] == RELAY | LOAD
    assert 180 * 10 < regs[3] < 230 * 10  # 0.1 W
    assert regs[7] == 3  # lease seconds left
    regs = socket(b, 1, T0 + 6_000)
    assert regs[0] == LOAD | LEASE_EXPIRED
    assert (regs[3], regs[7]) == (0, 0)
    on(b, 1, T0 + 7_000)
    assert socket(b, 1, T0 + 7_000)[0] == RELAY | LOAD  # a new on clears the trip bits


def test_writing_the_lease_alone_renews_while_on_and_is_kept_while_off() -> None:
    b = board()
    on(b, 0, T0, lease_s=10)
    assert b.write(2001, [60], T0 + 8_000) is None
    assert socket(b, 0, T0 + 20_000)[7] == 48
    assert b.relay(0)
    assert b.write(2000, [0], T0 + 21_000) is None
    assert not b.relay(0)
    assert b.write(2001, [30], T0 + 22_000) is None
    assert not b.relay(0)  # a lease alone never switches on
    assert b.write(2000, [1], T0 + 23_000) is None  # on with the registers as they are
    assert socket(b, 0, T0 + 23_000)[7] == 30


def test_max_w_trips_a_faulty_charger() -> None:
    b = board()
    b.plug(2, overdraw_charger(random.Random(3)), T0)
    on(b, 2, T0, max_w=1000)
    regs = socket(b, 2, T0 + 1_000)
    assert regs[0] == LOAD | OVERCURRENT
    assert not b.relay(2)


def test_overtemp_and_relay_fault_bits() -> None:
    b = board()
    b.model.force_temp(1, 80.0)
    assert socket(b, 0, T0 + 1_000)[0] == OVERTEMP
    assert socket(b, 0, T0 + 1_000)[6] == 800
    b.plug(3, lead_acid(random.Random(1), soc=0.2), T0 + 1_000)
    b.model.set_relay_fault(4, "welded")
    regs = socket(b, 3, T0 + 10_000)
    assert regs[0] == LOAD | RELAY_FAULT
    assert regs[3] > 0  # power flows with the relay off


def test_energy_register_tracks_true_energy_within_1_wh_across_the_wrap() -> None:
    b = board(wh_start=U32 - 150)
    b.plug(0, lead_acid(random.Random(1), soc=0.2), T0)
    on(b, 0, T0, lease_s=3600)
    first = socket(b, 0, T0)
    start = (first[4] << 16) | first[5]
    t = T0
    for _ in range(3):
        t += 3_000_000
        assert b.write(2001, [3600], t) is None
        regs = socket(b, 0, t)
        wh = (regs[4] << 16) | regs[5]
        assert abs((wh - start) % U32 - b.true_wh(0)) <= 1.0
    assert wh < start  # wrapped through 0
    assert b.true_wh(0) > 400


def test_refused_writes_and_reads_change_nothing() -> None:
    b = board()
    assert b.write(2000, [1, 0, 1000], T0) == ILLEGAL_VALUE  # no lease
    assert b.write(2000, [2], T0) == ILLEGAL_VALUE
    assert b.write(2003, [7], T0) == ILLEGAL_VALUE  # only 0 clears the card register
    assert b.write(2016, [1], T0) == ILLEGAL_ADDRESS  # socket 4 of 4
    assert b.write(1000, [1], T0) == ILLEGAL_ADDRESS  # input registers are read-only
    assert b.read_input(6, 1, T0) == ILLEGAL_ADDRESS
    assert b.read_input(1000, 33, T0) == ILLEGAL_ADDRESS
    assert b.read_holding(2000, 126, T0) == ILLEGAL_VALUE
    assert not b.relay(0)
    assert b.writes == 0


def test_on_refused_by_a_hot_socket() -> None:
    b = board(overtemp_trips=True)
    b.model.force_temp(1, 90.0)
    b.tick(T0 + 1_000)
    assert b.write(2000, [1, 300, 1000], T0 + 1_000) == DEVICE_FAILURE
    assert not b.relay(0)


def test_card_register_holds_the_low_word_until_cleared() -> None:
    b = board()
    assert b.tap_card(2, "04a1b2c3", T0) == 0xB2C3
    assert b.read_holding(2003, 9, T0) == [0, 0, 0, 1100, 0, 0, 0, 1100, 0xB2C3]
    assert b.write(2011, [0], T0) is None
    assert b.holding(2)[3] == 0
    with pytest.raises(ValueError, match="hex"):
        b.tap_card(0, "xyz1", T0)


def test_reboot_restarts_uptime_switches_off_and_takes_the_new_slave_id() -> None:
    b = board()
    on(b, 0, T0)
    assert b.write(3000, [9], T0 + 1_000) is None
    assert b.slave == 3  # only after a reboot
    b.reboot(T0 + 100_000)
    assert b.slave == 9
    assert not b.relay(0)
    assert b.holding(0) == (0, 0, 1100, 0)
    assert b.read_input(4, 2, T0 + 105_000) == [0, 5]


# --------------------------------------------------------------------------- the wire


class RawMaster:
    """A bare master on the bus's tty: writes frames, reads bytes (no pyserial, no bridge)."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)

    def close(self) -> None:
        os.close(self.fd)

    async def exchange(self, request: Request) -> tuple[bytes, float]:
        """Send, read the whole answer; return it and the time it took."""
        t0 = time.monotonic()
        os.write(self.fd, request.frame())
        answer = b""
        async with asyncio.timeout(2):
            while len(answer) < request.response_length():
                await asyncio.sleep(0.0005)
                try:
                    answer += os.read(self.fd, 4096)
                except BlockingIOError:
                    continue
        return answer, time.monotonic() - t0


async def test_an_exchange_takes_its_wire_time() -> None:
    clock = SimClock(T0)
    async with SimModbusBus([board(12)], clock, baud=19200) as bus:
        master = RawMaster(bus.device)
        try:
            request = Request.read_input(3, 1000, 96)
            answer, took = await master.exchange(request)
        finally:
            master.close()
    chars = 8 + 197 + 3.5  # request, answer, and the gap between them
    wire_s = chars * 11 / 19200
    assert len(answer) == 197
    assert wire_s <= took < wire_s + 0.015
    assert bus.counts["answers"] == 1


async def test_requests_too_close_together_are_counted_and_a_collision_loses_the_answer() -> None:
    clock = SimClock(T0)
    async with SimModbusBus([board(12)], clock, baud=9600) as bus:
        master = RawMaster(bus.device)
        try:
            os.write(master.fd, Request.read_input(3, 1000, 96).frame())
            await asyncio.sleep(0.02)  # the answer takes 230 ms on the wire
            os.write(master.fd, Request.read_input(3, 0, 6).frame())
            await asyncio.sleep(0.1)
        finally:
            master.close()
    assert bus.counts["requests"] == 2
    assert bus.counts["gap_violations"] == 1
    assert bus.counts["collisions"] == 1


async def test_garbage_and_requests_to_nobody_are_not_answered() -> None:
    clock = SimClock(T0)
    async with SimModbusBus([board(4)], clock, baud=115200) as bus:
        master = RawMaster(bus.device)
        try:
            os.write(master.fd, b"\x03\x04\x00")  # a frame that never completes
            await asyncio.sleep(0.01)
            os.write(master.fd, Request.read_input(7, 0, 6).frame())  # no slave 7
            await asyncio.sleep(0.01)
            bad = bytearray(Request.read_input(3, 0, 6).frame())
            bad[-1] ^= 0xFF
            os.write(master.fd, bytes(bad))
            await asyncio.sleep(0.02)
            with pytest.raises(BlockingIOError):
                os.read(master.fd, 100)
        finally:
            master.close()
    assert bus.counts["bad_requests"] == 2
    assert bus.counts["unanswered"] == 1
    assert bus.counts["answers"] == 0


def _resolve(path: Path) -> str:
    return os.path.realpath(path)


def _exists(path: Path) -> bool:
    return os.path.lexists(path)


def _write(path: Path, text: str) -> None:
    path.write_text(text)


async def test_the_bus_can_stand_behind_a_fixed_device_path(tmp_path: Path) -> None:
    link = tmp_path / "ttyRS485"
    async with SimModbusBus([board(4)], SimClock(T0), baud=115200, link=str(link)) as bus:
        assert _resolve(link) == bus.device
        master = RawMaster(str(link))
        try:
            answer, _ = await master.exchange(Request.read_input(3, 0, 6))
        finally:
            master.close()
        assert answer[:3] == bytes([3, 4, 12])
    assert not _exists(link)
    _write(link, "not a tty")
    with pytest.raises(FileExistsError):
        await SimModbusBus([board(4)], SimClock(T0), link=str(link)).start()
