"""The Modbus bridge over a pty against simulated boards: events, commands, faults, timing.

Board time is a SimClock moved by the tests; the wire runs in real time
(115200 baud unless the test is about wire time), so each poll cycle of two
12-socket boards takes about 60 ms.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.clock import SimClock
from controller.core.metering import PortMeter
from controller.service import ControllerService
from controller.settings import settings_from_dict
from controller.store import EdgeStore, open_engine
from firmware_bridge.messages import BoardStatus, CmdAck, PortCommand, PortEvent, Telemetry
from firmware_bridge.modbus_bridge import ModbusBridge, ModbusBusSettings
from firmware_bridge.modbus_line import ModbusConfigError
from simulators.ebike import lead_acid, overdraw_charger
from simulators.modbus_pty import PtyPort
from tests.test_modbus_harness import FAST, T0, VECTORS, Shed, leak_check, ports_of, running_shed

U32 = 2**32


@pytest.fixture(autouse=True)
async def _no_leaks() -> AsyncIterator[None]:
    async with leak_check():
        yield


def on(port: int, cmd_id: str = "on-1", lease_s: int = 300, max_w: int = 1000) -> PortCommand:
    return PortCommand(port, cmd_id, "on", lease_s=lease_s, max_w=max_w)


async def command(shed: Shed, cmd: PortCommand) -> CmdAck:
    shed.bridge.send_command(cmd)
    await shed.until(lambda: shed.acks(cmd.id))
    (ack,) = shed.acks(cmd.id)
    return ack


# --------------------------------------------------------------------------- polling


async def test_boards_come_online_and_every_port_reports_once_per_cycle() -> None:
    async with running_shed() as shed:
        await shed.cycles(4)
        counts = shed.bridge.counters()
    assert shed.statuses("b1") == [BoardStatus("b1", True, "1.04", ports_of(1), T0)]
    assert shed.statuses("b2") == [BoardStatus("b2", True, "1.04", ports_of(2), T0)]
    for port in range(1, 25):
        samples = shed.telemetry(port)
        assert [t.seq for t in samples] == list(range(len(samples)))
        assert len(samples) >= 4
        slave, k = divmod(port - 1, 12)
        last = samples[-1]
        assert (last.ts, last.relay, last.w) == (T0, False, 0.0)
        assert last.wh == shed.board(slave + 1).register(k)
    # per board and cycle: the whole socket block in one FC 04 read, the card registers in one FC 03
    polls = [(r.slave, r.function, r.address, r.values) for r in shed.bus.requests]
    cycle = [(1, 4, 1000, (96,)), (1, 3, 2003, (45,)), (2, 4, 1000, (96,)), (2, 3, 2003, (45,))]
    assert polls[:6] == [(1, 4, 0, (6,)), cycle[0], cycle[1], (2, 4, 0, (6,)), cycle[2], cycle[3]]
    assert polls[6:18] == cycle * 3
    assert shed.bus.requests[1].frame == bytes.fromhex(VECTORS["read_sockets_request"])
    assert counts["dropped"] == counts["timeouts"] == shed.bus.counts["gap_violations"] == 0


async def test_on_renew_off() -> None:
    async with running_shed() as shed:
        await shed.cycles(1)
        shed.board(1).plug(4, lead_acid(random.Random(1), soc=0.2), T0)
        ack = await command(shed, on(5, "c1", lease_s=300, max_w=1000))
        assert ack == CmdAck(5, "c1", True, True, None)
        (write,) = [r for r in shed.bus.requests if r.function == 16]
        assert write.frame == bytes.fromhex(VECTORS["switch_on_port5_request"])
        assert shed.board(1).holding(4)[:3] == (1, 300, 1000)
        await shed.advance(10)
        assert shed.last(5).relay and shed.last(5).w > 100
        assert await command(shed, PortCommand(5, "c2", "renew", lease_s=600)) == CmdAck(
            5, "c2", True, True, None
        )
        assert shed.board(1).holding(4)[1] == 600
        ack = await command(shed, PortCommand(3, "c3", "off"))
        assert ack == CmdAck(3, "c3", True, False, None)
        # the bus thread polls on while the ack is handed over: the off is the last write
        off = [r for r in shed.bus.requests if r.function == 6][-1]
        assert off.frame == bytes.fromhex(VECTORS["switch_off_port3_request"])
        assert await command(shed, PortCommand(3, "c4", "renew", lease_s=60)) == CmdAck(
            3, "c4", False, False, "relay_off"
        )
        assert await command(shed, PortCommand(5, "c5", "off")) == CmdAck(5, "c5", True, False)
        await shed.cycles(1)
        assert not shed.last(5).relay
        assert not shed.board(1).relay(4)


async def test_lease_expiry_is_an_event_then_telemetry_shows_the_relay_off() -> None:
    async with running_shed() as shed:
        shed.board(2).plug(0, lead_acid(random.Random(1), soc=0.2), T0)
        await command(shed, on(13, lease_s=5))
        await shed.advance(7)
        (event,) = shed.events(13)
        assert event.type == "lease_expired"
        after = [m for m in shed.msgs[shed.msgs.index(event) :] if isinstance(m, Telemetry)]
        assert after[0].port == 13 and not after[0].relay


async def test_board_trips_are_events() -> None:
    async with running_shed() as shed:
        await shed.cycles(1)  # the first read is the baseline of the status bits
        b1 = shed.board(1)
        b1.plug(0, overdraw_charger(random.Random(2)), T0)
        await command(shed, on(1, max_w=1000))
        b1.model.force_temp(2, 75.0)
        b1.plug(2, lead_acid(random.Random(1), soc=0.2), T0)
        b1.model.set_relay_fault(3, "welded")
        await shed.advance(5)
        assert [e.type for e in shed.events(1)] == ["overcurrent"]
        assert [e.type for e in shed.events(2)] == ["overtemp"]
        assert [e.type for e in shed.events(3)] == ["relay_fault"]
        assert shed.last(3).w > 0 and not shed.last(3).relay


async def test_energy_from_the_register_tracks_true_energy_across_the_wrap() -> None:
    async with running_shed(board_kw={"wh_start": U32 - 120}) as shed:
        await shed.cycles(1)
        board = shed.board(2)
        board.plug(3, lead_acid(random.Random(4), soc=0.2), T0)
        await command(shed, on(16, lease_s=3600))
        first = shed.last(16)
        for i in range(6):
            await shed.advance(600, step_s=600)
            await command(shed, PortCommand(16, f"r{i}", "renew", lease_s=3600))
        await shed.cycles(1)
        samples = shed.telemetry(16)[shed.telemetry(16).index(first) :]
        billed = sum((b.wh - a.wh) % U32 for a, b in itertools.pairwise(samples))
    assert samples[-1].wh < first.wh  # the register wrapped through 0
    assert abs(billed - board.true_wh(3)) <= 1.0
    assert board.true_wh(3) > 150


# --------------------------------------------------------------------------- cards


async def test_a_card_tap_is_a_card_event_and_the_register_is_cleared() -> None:
    async with running_shed() as shed:
        await shed.cycles(1)
        shed.board(2).tap_card(4, "04A1B2C3", T0)
        await shed.until(lambda: shed.events(17, "card"))
        await shed.until(lambda: shed.board(2).holding(4)[3] == 0)
        shed.board(2).tap_card(4, "04A1B2C3", T0)  # the same card again, to stop
        await shed.until(lambda: len(shed.events(17, "card")) == 2)
        await shed.cycles(2)
    assert shed.events(17, "card") == [PortEvent(17, T0, "card", card_uid="B2C3")] * 2
    assert shed.bridge.counters()["cards"] == 2


async def test_a_tap_left_from_before_the_start_is_cleared_without_an_event() -> None:
    async with running_shed(start=False) as shed:
        shed.board(1).tap_card(0, "CAFE", T0)
        async with shed.bridge:
            await shed.cycles(2)
        assert shed.board(1).holding(0)[3] == 0
        assert shed.events(kind="card") == []


# --------------------------------------------------------------------------- faults


async def test_a_silent_board_goes_offline_without_stalling_the_bus_and_comes_back() -> None:
    async with running_shed() as shed:
        await shed.cycles(1)
        shed.bus.set_fault(2, "silent")
        await shed.until(lambda: BoardStatus("b2", False, ts=T0) in shed.msgs, timeout_s=3)
        assert shed.bridge.board_online("b2") is False
        assert shed.bridge.board_online("b1") is True
        ack = await command(shed, on(13, "to-offline"))
        assert ack == CmdAck(13, "to-offline", False, False, "board_offline")
        b1_before = len(shed.telemetry(1))
        await shed.cycles(6)
        assert len(shed.telemetry(1)) >= b1_before + 5  # board 1 is still read every cycle
        quick = list(shed.bridge.recent_cycles)[-6:]
        assert min(c.duration_s for c in quick) < 0.04  # no time-out in a cycle without a probe
        assert shed.bridge.counters()["probes"] >= 1
        shed.bus.clear_fault(2)
        await shed.until(lambda: len(shed.statuses("b2")) == 3, timeout_s=3)
        assert shed.statuses("b2")[-1].online
        await shed.until(lambda: shed.last(13).seq > 0)
        counts = shed.bridge.counters()
    assert counts["timeouts"] >= 3 * 3  # three cycles of three attempts before offline
    assert counts["retries"] >= 3 * 2


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("bad_crc", "bad_crc"), ("truncate", "wrong_length"), ("wrong_slave", "wrong_slave")],
)
async def test_a_bad_answer_is_counted_dropped_and_retried(fault: str, reason: str) -> None:
    async with running_shed() as shed:
        await shed.cycles(1)
        seen = len(shed.telemetry(1))
        shed.bus.set_fault(1, fault, count=1)  # type: ignore[arg-type]
        await shed.cycles(2)
        counts = shed.bridge.counters()
        assert counts[f"dropped.{reason}"] == 1
        assert counts["dropped"] == 1
        assert counts["retries"] == 1
        assert len(shed.telemetry(1)) >= seen + 2  # the retry got the data: no cycle lost
        assert shed.statuses("b1") == [BoardStatus("b1", True, "1.04", ports_of(1), T0)]


async def test_a_slow_board_within_the_timeout_works_beyond_it_times_out() -> None:
    async with running_shed(timeout_s=0.05) as shed:
        await shed.cycles(1)
        shed.bus.set_fault(1, "slow", delay_s=0.02)
        await shed.cycles(3)
        assert shed.bridge.counters()["timeouts"] == 0
        shed.bus.set_fault(1, "slow", delay_s=0.15)
        await shed.until(lambda: shed.bridge.board_online("b1") is False, timeout_s=5)
        counts = shed.bridge.counters()
        assert counts["timeouts"] >= 9
        assert shed.bus.counts["collisions"] > 0  # the retry went while the late answer was due
        b2 = len(shed.telemetry(13))
        await shed.cycles(3)
        assert len(shed.telemetry(13)) >= b2 + 3


async def test_a_board_that_refuses_a_command_gives_a_failed_ack() -> None:
    async with running_shed(board_kw={"overtemp_trips": True}) as shed:
        await shed.cycles(1)
        shed.board(1).model.force_temp(2, 90.0)
        await shed.advance(2)
        ack = await command(shed, on(2, "hot"))
        assert ack == CmdAck(2, "hot", False, False, "device_failure")
        assert not shed.board(1).relay(1)
        assert shed.bridge.counters()["exceptions"] == 1


async def test_an_exception_answer_to_a_read_is_not_retried() -> None:
    async with running_shed() as shed:
        await shed.cycles(1)
        shed.bus.set_fault(2, "exception", code=6, count=1)
        await shed.cycles(3)
        counts = shed.bridge.counters()
    assert (counts["exceptions"], counts["retries"], counts["dropped"]) == (1, 0, 0)
    assert shed.bridge.board_online("b2") is True


async def test_a_command_to_a_board_that_stopped_answering_times_out_after_retries() -> None:
    async with running_shed() as shed:
        await shed.cycles(1)
        shed.bus.set_fault(2, "silent")
        ack = await command(shed, PortCommand(14, "lost", "off"))
        writes = [r for r in shed.bus.requests if (r.slave, r.function) == (2, 6)]
    assert ack == CmdAck(14, "lost", False, False, "timeout")
    assert len(writes) == 3  # the first try and two retries


async def test_a_reboot_restarts_seq_so_the_controller_metering_sees_it() -> None:
    async with running_shed() as shed:
        board = shed.board(1)
        board.plug(0, lead_acid(random.Random(1), soc=0.2), T0)
        await command(shed, on(1))
        await shed.advance(30, step_s=5)
        before = shed.last(1)
        assert before.relay and before.seq >= 5
        board.reboot(shed.clock.now_ms())
        await shed.until(lambda: len(shed.statuses("b1")) == 2)
        await shed.cycles(2)
        counts = shed.bridge.counters()
    reboot_status = shed.statuses("b1")[1]
    assert reboot_status.online
    at = shed.msgs.index(reboot_status)
    after = [m for m in shed.msgs[at:] if isinstance(m, Telemetry) and m.port == 1]
    assert after[0].seq == 0 and not after[0].relay
    assert shed.last(1).seq == len(after) - 1
    assert counts["reboots"] == 1
    meter = PortMeter(max_w=1100)
    rebooted = [meter.feed(t.ts, t.seq, t.wh, t.ts).rebooted for t in shed.telemetry(1)]
    assert rebooted.count(True) == 1
    assert [t.seq for t in shed.telemetry(13)][-1] > before.seq  # board 2 did not reboot


async def test_barrier_steps_simulated_time_with_the_commands_sent_in_answer() -> None:
    sent: list[PortCommand] = []
    bridge: list[ModbusBridge] = []

    def controller(msg: object) -> None:  # answers the first sample at T0 + 2 s with an on
        if isinstance(msg, Telemetry) and msg.port == 5 and msg.ts == T0 + 2_000 and not sent:
            sent.append(on(5, "answer"))
            bridge[0].send_command(sent[0])

    async with running_shed(poll_interval_s=1.0, also=controller) as shed:
        bridge.append(shed.bridge)
        await shed.cycles(1)
        for step in (1, 2, 3):
            shed.clock.advance(1.0)
            async with asyncio.timeout(2):
                await shed.bridge.barrier()
            assert {shed.last(p).ts for p in range(1, 25)} == {T0 + 1_000 * step}
            if step == 2:
                assert shed.acks("answer") == [CmdAck(5, "answer", True, True)]
        cycles = shed.bridge.counters()["cycles"]
    assert cycles == 4  # one per step: with a SimClock the bus waits for the clock


# --------------------------------------------------------------------------- commands first


async def test_a_safety_off_waits_at_most_for_the_exchange_in_flight() -> None:
    async with running_shed({1: 12, 2: 12, 3: 12}, baud=19200) as shed:
        await shed.cycles(1)
        timing = shed.bridge.settings.timing
        frame_s = timing.exchange_s(8, 197)  # the longest exchange: a socket-block read
        rng = random.Random(3)
        latencies = []
        for i in range(6):
            await asyncio.sleep(rng.uniform(0, frame_s))
            loop = asyncio.get_running_loop()
            seen = len(shed.bus.requests)
            t0 = loop.time()
            await command(shed, PortCommand(1 + 12 * (i % 3), f"off-{i}", "off"))
            off = next(r for r in list(shed.bus.requests)[seen:] if r.function == 6)
            latencies.append(off.t - t0)
    assert max(latencies) <= frame_s + 0.020
    assert shed.bus.counts["gap_violations"] == 0


async def test_an_off_goes_first_and_withdraws_an_older_on_of_its_port() -> None:
    async with running_shed() as shed:
        await shed.cycles(1)
        seen = len(shed.bus.requests)
        shed.bridge.send_command(on(1, "on-a"))
        shed.bridge.send_command(on(2, "on-b"))
        shed.bridge.send_command(PortCommand(1, "off-a", "off"))
        await shed.until(lambda: len(shed.acks()) == 3)
        writes = [(r.function, r.address) for r in shed.bus.requests if r.function in (6, 16)]
        assert [r for r in list(shed.bus.requests)[seen:] if r.function in (6, 16)]
    assert writes == [(6, 2000), (16, 2004)]  # off of port 1, then on of port 2
    assert [a.id for a in shed.acks()] == ["off-a", "on-a", "on-b"]
    assert shed.acks("on-a") == [CmdAck(1, "on-a", False, False, "superseded")]
    assert not shed.board(1).relay(0) and shed.board(1).relay(1)


async def test_a_repeated_id_is_acknowledged_again_not_executed_twice() -> None:
    async with running_shed() as shed:
        first = await command(shed, on(3, "same"))
        writes = shed.board(1).writes
        shed.bridge.send_command(on(3, "same"))
        await shed.until(lambda: len(shed.acks("same")) == 2)
        assert shed.acks("same") == [first, first]
        assert shed.board(1).writes == writes
        assert shed.bridge.counters()["commands_replayed"] == 1


async def test_commands_the_registers_cannot_carry_are_refused() -> None:
    async with running_shed(start=False) as shed:
        bridge = shed.bridge
        with pytest.raises(ValueError, match="not on bus"):
            bridge.send_command(on(99))
        with pytest.raises(ValueError, match="lease_s"):
            bridge.send_command(on(1, lease_s=70_000))
        with pytest.raises(ValueError, match="max_w"):
            bridge.send_command(PortCommand(1, "x", "on", lease_s=60))
        bridge.send_command(on(1, "dup"))
        with pytest.raises(ValueError, match="pending"):
            bridge.send_command(on(1, "dup"))
        bridge.publish_port_state(1, "charging", "s1", 200.0, 12, T0)  # no display: no-op
        await bridge.stop()
        assert bridge.counters()["commands_dropped"] == 1


# --------------------------------------------------------------------------- the serial port


async def test_a_pty_cannot_run_parity_and_the_bridge_says_so() -> None:
    port = PtyPort.open()
    try:
        settings = ModbusBusSettings(port.path, parity="E", boards={1: ("b1", (1,))})
        bridge = ModbusBridge(settings, SimClock(T0), lambda _msg: None)
        with pytest.raises(ModbusConfigError) as err:
            bridge.start()
        assert err.value.code == "line_settings"
        assert "stopbits = 2" in str(err.value)
        await bridge.stop()
    finally:
        port.close()


async def test_a_missing_port_is_retried_and_commands_fail_as_bus_down() -> None:
    msgs: list[object] = []
    got = asyncio.Event()

    def sink(msg: object) -> None:
        msgs.append(msg)
        got.set()

    settings = ModbusBusSettings(
        "/dev/ttyUSB-missing", **{**FAST, "reopen_min_s": 0.01}, boards={1: ("b1", (1,))}
    )
    async with ModbusBridge(settings, SimClock(T0), sink) as bridge:
        bridge.send_command(PortCommand(1, "c", "off"))
        async with asyncio.timeout(2):
            await got.wait()
        assert bridge.counters()["open_failures"] >= 1
    assert msgs == [CmdAck(1, "c", False, False, "bus_down")]


async def test_an_adapter_that_goes_away_takes_every_board_offline() -> None:
    async with running_shed() as shed:
        await shed.cycles(1)
        await shed.bus.stop()  # the USB adapter is unplugged
        await shed.until(lambda: len(shed.statuses("b1")) == len(shed.statuses("b2")) == 2)
        assert shed.statuses("b1")[-1] == BoardStatus("b1", False, ts=T0)
        ack = await command(shed, PortCommand(1, "gone", "off"))
        counts = shed.bridge.counters()
    assert ack == CmdAck(1, "gone", False, False, "bus_down")
    assert counts["line_failures"] == 1
    assert counts["open_failures"] >= 1


# --------------------------------------------------------------------------- with the controller


async def test_the_controller_runs_a_session_on_a_modbus_socket_from_a_card(tmp_path: Path) -> None:
    """The controller, unchanged, drives a Modbus socket: it cannot tell the transport."""
    settings = settings_from_dict(
        {
            "shed": {"id": "bus-1", "data_dir": str(tmp_path)},
            "boards": [{"id": "b1", "ports": list(range(1, 13))}],
            "cards": [{"uid": "B2C3", "balance_fen": 2000}],
        }
    )
    clock = SimClock(T0)
    engine = open_engine(tmp_path / "bus-1.sqlite")
    ids = (f"id-{n}" for n in itertools.count())
    service = ControllerService(settings, clock, EdgeStore(engine), new_id=lambda: next(ids))
    try:
        async with running_shed({1: 12}, clock=clock, also=service.on_message) as shed:
            service.bridge = shed.bridge
            board = shed.board(1)
            await shed.cycles(1)
            board.plug(4, lead_acid(random.Random(1), soc=0.2), T0)
            board.tap_card(4, "04A1B2C3", T0)  # the card's low word, B2C3, is its id here
            await shed.until(lambda: board.relay(4))
            assert service.stats.sessions_opened == 1
            for _ in range(12):
                await shed.advance(10, step_s=10)
                service.tick()
            board.tap_card(4, "04A1B2C3", clock.now_ms())  # the same card again: stop
            await shed.until(lambda: service.stats.sessions_closed == 1)
        (session,) = service.closed  # read from the store, before it is closed
    finally:
        engine.dispose()
    assert not board.relay(4)
    assert session.port == 5 and session.end_reason == "card_stop"
    assert abs(session.energy_wh - board.true_wh(4)) <= 1.0
    assert session.energy_wh > 3


# --------------------------------------------------------------------------- the bus thread


def _fifo_allowed() -> bool:
    """Whether this process may make a thread SCHED_FIFO (root, CAP_SYS_NICE or RLIMIT_RTPRIO)."""
    allowed: list[bool] = []

    def probe() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        except OSError:
            allowed.append(False)
        else:
            allowed.append(True)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return allowed[0]


async def test_the_bus_runs_in_a_thread_of_its_own_at_the_priority_configured() -> None:
    seen: list[int] = []

    def where(msg: object) -> None:  # the sink is called on the caller's loop
        seen.append(threading.get_ident())

    async with running_shed(realtime_priority=5, also=where) as shed:
        await shed.cycles(1)
        thread = shed.bridge._thread
        assert thread is not None and thread.is_alive() and thread is not threading.current_thread()
        assert set(seen) == {threading.get_ident()}
        assert shed.bridge.realtime is _fifo_allowed()
        tid = thread.native_id
        assert tid is not None
        policy = os.sched_getscheduler(tid)
        assert policy == (os.SCHED_FIFO if shed.bridge.realtime else os.SCHED_OTHER)
        if shed.bridge.realtime:
            assert os.sched_getparam(tid).sched_priority == 5
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller's thread is untouched
    assert not thread.is_alive()  # stop() joined it


def test_a_realtime_priority_out_of_range_is_refused() -> None:
    with pytest.raises(ModbusConfigError, match=r"realtime_priority must be 0\.\.99"):
        ModbusBusSettings("/dev/ttyUSB0", boards={1: ("b1", (1,))}, realtime_priority=100)
