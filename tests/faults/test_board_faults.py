"""Boards that misbehave: a reboot mid-session, a meter register that wraps, a
board offline for a while, board clocks minutes ahead and behind."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.faults.harness import FaultShed, wait_for
from tests.faults.invariants import U32, check


def _start(shed: FaultShed, ports: list[int]) -> None:
    for i, port in enumerate(ports):
        kind = "card" if i % 2 else "order"
        started = shed.start_session(port, kind=kind, prepaid_fen=900)
        assert started, f"socket {port} refused: {shed.last_refusal}"


def test_board_reboot_mid_session(make_shed: Callable[..., FaultShed]) -> None:
    shed = make_shed(seed=21)
    shed.start_controller()
    shed.plug_all()
    _start(shed, shed.ports)
    time.sleep(2.0)
    shed.sim_.reboot_board("b1")  # firmware restart: relays off, seq 0, registers kept
    shed.sim_.reboot_board("b2", drop_connection=True)  # ... and the connection dies too
    time.sleep(2.0)
    wait_for(shed.ready, 20, "boards back")
    # The sockets are free again (or still charging): both are fine, a lost Wh is not.
    _start(shed, [p["port"] for p in shed.status()["ports"] if p["session"] is None][:4])
    time.sleep(1.5)
    shed.settle()
    check(shed, "board reboot mid-session")


def test_meter_register_wraps_mid_session(make_shed: Callable[..., FaultShed]) -> None:
    near = U32 - 3  # 3 Wh below the wrap: about 4 s of charging
    shed = make_shed(seed=22, wh_start=dict.fromkeys(range(7, 13), near))
    shed.start_controller()
    shed.plug_all()
    _start(shed, shed.ports)
    time.sleep(7.0)
    shed.kill()  # and a restart across the wrap
    shed.start_controller()
    time.sleep(2.0)
    shed.settle()
    wrapped = [r for r in shed.query("SELECT first_wh, last_wh FROM sessions")
               if r["last_wh"] < r["first_wh"]]  # fmt: skip
    fig = check(shed, "meter register wrap", extra={"wrapped": len(wrapped)})
    assert len(wrapped) == 6, f"{len(wrapped)} sessions wrapped, 6 should ({fig.line()})"


def test_board_offline_for_a_while(make_shed: Callable[..., FaultShed]) -> None:
    shed = make_shed(seed=23)
    shed.start_controller()
    shed.plug_all()
    _start(shed, shed.ports)
    time.sleep(2.0)
    shed.sim_.disconnect("b1")  # network gone; mains, relays and leases stay
    lease = shed.rules["lease_s"]
    silent_s = 2 * lease + shed.rules["heartbeat_s"] * shed.rules["offline_after_heartbeats"]
    wait_for(lambda: not any(on for p, on in shed.sim_.relays().items() if p <= 6),
             lease + 2, "b1's leases cut its relays")  # fmt: skip
    time.sleep(silent_s)
    shed.sim_.reconnect("b1")
    wait_for(shed.ready, 20, "b1 back")
    time.sleep(1.0)
    shed.settle()
    check(shed, "board offline for a while", expect_alarms=("board_offline",),
          extra={"offline_s": silent_s + lease})  # fmt: skip


def test_board_clocks_minutes_ahead_and_behind(make_shed: Callable[..., FaultShed]) -> None:
    shed = make_shed(seed=24)
    shed.sim_.set_clock_offset("b1", 3 * 60_000)  # three minutes fast
    shed.sim_.set_clock_offset("b2", -4 * 60_000)  # four minutes slow
    shed.start_controller()
    shed.plug_all()
    _start(shed, shed.ports)
    time.sleep(2.5)
    shed.kill()
    shed.start_controller()
    time.sleep(1.5)
    for port in (1, 2, 7, 8):
        shed.stop_session(port)
    time.sleep(1.0)
    _start(shed, [1, 7])
    time.sleep(1.5)
    shed.settle()
    check(shed, "board clocks ahead and behind")
