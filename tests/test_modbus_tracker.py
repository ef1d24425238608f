"""BoardTracker, the pure part of the bridge: decoded reads in, port messages out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from firmware_bridge.messages import BoardStatus, PortEvent, Telemetry
from firmware_bridge.modbus_board import BoardTracker
from firmware_bridge.modbus_registers import (
    LEASE_EXPIRED,
    LOAD,
    OVERCURRENT,
    OVERTEMP,
    RELAY,
    RELAY_FAULT,
    BoardInfo,
    SocketState,
)
from tests.test_modbus_harness import T0, leak_check

PORTS = (13, 14, 15)


@pytest.fixture(autouse=True)
async def _no_leaks() -> AsyncIterator[None]:
    async with leak_check():
        yield


def tracker() -> BoardTracker:
    return BoardTracker(2, "b2", PORTS, offline_after_cycles=3)


def info(uptime_s: int, sockets: int = 3) -> BoardInfo:
    return BoardInfo(1, sockets, "1.04", 30.0, uptime_s)


def state(status: int = 0, wh: int = 100) -> SocketState:
    return SocketState(status, 230.0, 1.0 if status & RELAY else 0.0, 200.0, wh, 30.0, 0)


def test_first_info_read_says_online_with_fw_and_ports() -> None:
    t = tracker()
    assert t.info_read(info(100), T0) == [BoardStatus("b2", True, "1.04", PORTS, T0)]
    assert t.info_read(info(110), T0 + 10_000) == []  # still online: nothing new
    assert t.online is True


def test_telemetry_per_port_with_own_seq() -> None:
    t = tracker()
    t.info_read(info(1), T0)
    first = t.sockets_read([state(), state(RELAY | LOAD, 5), state()], T0)
    second = t.sockets_read([state(), state(RELAY | LOAD, 6), state()], T0 + 1000)
    assert first == [
        Telemetry(13, T0, 0, 230.0, 0.0, 200.0, 100, False, 30.0),
        Telemetry(14, T0, 0, 230.0, 1.0, 200.0, 5, True, 30.0),
        Telemetry(15, T0, 0, 230.0, 0.0, 200.0, 100, False, 30.0),
    ]
    assert [m.seq for m in second if isinstance(m, Telemetry)] == [1, 1, 1]


def test_rising_status_bits_are_events_before_telemetry_and_the_first_read_is_a_baseline() -> None:
    t = tracker()
    t.info_read(info(1), T0)
    baseline = t.sockets_read([state(OVERCURRENT), state(), state()], T0)
    assert not [m for m in baseline if isinstance(m, PortEvent)]  # latched before we came
    all_bits = OVERCURRENT | OVERTEMP | RELAY_FAULT | LEASE_EXPIRED
    out = t.sockets_read([state(OVERCURRENT), state(all_bits), state(LEASE_EXPIRED)], T0 + 1)
    events = [m for m in out if isinstance(m, PortEvent)]
    assert events == [
        PortEvent(14, T0 + 1, "overcurrent"),
        PortEvent(14, T0 + 1, "overtemp"),
        PortEvent(14, T0 + 1, "relay_fault"),
        PortEvent(14, T0 + 1, "lease_expired"),
        PortEvent(15, T0 + 1, "lease_expired"),
    ]
    assert out.index(events[-1]) < min(out.index(m) for m in out if isinstance(m, Telemetry))
    # held bits are not new; cleared and set again is
    again = t.sockets_read([state(), state(all_bits), state()], T0 + 2)
    assert not [m for m in again if isinstance(m, PortEvent)]
    out = t.sockets_read([state(OVERCURRENT), state(), state()], T0 + 3)
    assert [m for m in out if isinstance(m, PortEvent)] == [PortEvent(13, T0 + 3, "overcurrent")]


def test_offline_after_three_failed_cycles_then_back() -> None:
    t = tracker()
    t.info_read(info(1), T0)
    assert t.cycle_failed(T0 + 1) == []
    assert t.cycle_failed(T0 + 2) == []
    assert t.cycle_failed(T0 + 3) == [BoardStatus("b2", False, ts=T0 + 3)]
    assert t.cycle_failed(T0 + 4) == []  # said once
    assert t.online is False
    assert t.info_read(info(10), T0 + 9_000) == [BoardStatus("b2", True, "1.04", PORTS, T0 + 9_000)]


def test_a_good_read_resets_the_failed_cycles() -> None:
    t = tracker()
    t.info_read(info(1), T0)
    t.cycle_failed(T0)
    t.cycle_failed(T0)
    t.sockets_read([state()] * 3, T0)
    assert t.cycle_failed(T0) == []
    assert t.online is True


def test_uptime_going_back_is_a_reboot_seq_restarts_and_bits_are_fresh() -> None:
    t = tracker()
    t.info_read(info(500), T0)
    for i in range(3):
        t.sockets_read([state(RELAY | OVERCURRENT)] * 3, T0 + i)
    assert t.relay_dropped([state()] * 3)
    out = t.info_read(info(3), T0 + 5_000)
    assert out == [BoardStatus("b2", True, "1.04", PORTS, T0 + 5_000)]
    assert t.reboots == 1
    after = t.sockets_read([state(OVERCURRENT), state(), state()], T0 + 5_000)
    assert [m.seq for m in after if isinstance(m, Telemetry)] == [0, 0, 0]
    assert [m for m in after if isinstance(m, PortEvent)] == [
        PortEvent(13, T0 + 5_000, "overcurrent")  # set again after the boot: news
    ]


def test_uptime_that_kept_counting_while_offline_is_not_a_reboot() -> None:
    t = tracker()
    t.info_read(info(1000), T0)
    for i in range(3):
        t.cycle_failed(T0 + i)
    t.info_read(info(1000 + 600), T0 + 600_000)
    assert t.reboots == 0
    t.info_read(info(1000 + 700), T0 + 1_000_000)  # 300 s missing: it rebooted meanwhile
    assert t.reboots == 1


def test_a_board_with_fewer_sockets_polls_only_those() -> None:
    t = tracker()
    assert t.sockets == 3
    t.info_read(info(1, sockets=2), T0)
    assert t.sockets == 2


def test_an_unknown_map_version_is_refused() -> None:
    with pytest.raises(ValueError, match="map v2"):
        tracker().info_read(BoardInfo(2, 3, "2.00", 30.0, 1), T0)


def test_card_taps_cleared_by_write_back() -> None:
    t = tracker()
    stale = t.cards_read([0xB2C3, 0, 0], T0)
    assert (stale.events, stale.clear) == ([], [0])  # waited there before we came: stale
    t.card_cleared(0)
    tap = t.cards_read([0, 0x04A1, 0], T0 + 1)
    assert tap.events == [PortEvent(14, T0 + 1, "card", card_uid="04A1")]
    assert tap.clear == [1]
    # the write-back failed: the same word is still there, it is not a second tap
    again = t.cards_read([0, 0x04A1, 0], T0 + 2)
    assert (again.events, again.clear) == ([], [1])
    t.card_cleared(1)
    # the same card again (to stop) after the clear: a second tap
    stop = t.cards_read([0, 0x04A1, 0], T0 + 3)
    assert stop.events == [PortEvent(14, T0 + 3, "card", card_uid="04A1")]


def test_card_taps_by_change_when_the_board_refuses_the_write_back() -> None:
    t = tracker()
    t.clears_cards = False
    assert t.cards_read([0x1111, 0, 0], T0).events == []  # baseline
    assert t.cards_read([0x1111, 0, 0], T0 + 1).events == []
    assert t.cards_read([0x2222, 0, 0], T0 + 2).events == [
        PortEvent(13, T0 + 2, "card", card_uid="2222")
    ]
    assert t.cards_read([0x2222, 0, 0], T0 + 3).clear == []
