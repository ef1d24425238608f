"""The controller left dead, the broker restarted, the broker down for long.

Lease 4 s: a board cuts a relay by itself 4 s after its last renewal, whether
or not anyone is there to tell it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.faults.harness import FaultShed, wait_for
from tests.faults.invariants import check


def _charge_everywhere(shed: FaultShed) -> None:
    shed.plug_all()
    for i, port in enumerate(shed.ports):
        kind = "card" if i % 3 == 0 else "order"
        started = shed.start_session(port, kind=kind, prepaid_fen=900)
        assert started, f"socket {port} refused: {shed.last_refusal}"


def _all_off(shed: FaultShed) -> bool:
    return not any(shed.sim_.relays().values())


def test_controller_dead_every_socket_off_within_a_lease_then_billed_from_registers(
    make_shed: Callable[..., FaultShed],
) -> None:
    shed = make_shed(seed=5)
    shed.start_controller()
    _charge_everywhere(shed)
    time.sleep(2.5)
    assert all(shed.sim_.relays().values())
    shed.kill()
    killed = time.monotonic()
    lease = shed.rules["lease_s"]
    wait_for(lambda: _all_off(shed), lease + 2, "every relay off after the controller died")
    off_after = time.monotonic() - killed
    assert off_after <= lease + 0.3, f"relays off {off_after:.2f} s after the kill, lease {lease} s"
    time.sleep(lease)  # dead for two leases in all
    shed.start_controller(wait=False)
    wait_for(shed.ready, 30, "controller ready")
    shed.settle()
    check(shed, "controller dead for two leases", extra={"off_after_s": round(off_after, 2)})


def test_broker_restart(make_shed: Callable[..., FaultShed]) -> None:
    shed = make_shed(seed=6)
    shed.start_controller()
    _charge_everywhere(shed)
    time.sleep(2.0)
    shed.broker.stop()
    down = time.monotonic()
    shed.broker.start()
    back = time.monotonic() - down
    # Both sides reconnect; the sessions go on charging through it.
    time.sleep(3.0)
    wait_for(shed.ready, 20, "controller and boards back")
    still = [p["port"] for p in shed.status()["ports"] if p["session"] is not None]
    time.sleep(2.0)
    shed.settle()
    check(shed, "broker restart", extra={"broker_down_s": round(back, 2),
                                         "sessions_through_restart": len(still)})  # fmt: skip


def test_broker_down_longer_than_two_leases(make_shed: Callable[..., FaultShed]) -> None:
    shed = make_shed(seed=7)
    shed.start_controller()
    _charge_everywhere(shed)
    time.sleep(2.0)
    shed.broker.stop()
    down = time.monotonic()
    lease = shed.rules["lease_s"]
    # Nobody renews: every board cuts its relays by itself within a lease.
    wait_for(lambda: _all_off(shed), lease + 2, "relays off while the broker is down")
    off_after = time.monotonic() - down
    time.sleep(max(0.0, 2 * lease + 2 - (time.monotonic() - down)))
    shed.broker.start()
    wait_for(shed.ready, 30, "controller and boards back")
    shed.settle()
    check(shed, "broker down for two leases", expect_alarms=("broker_unreachable",),
          extra={"off_after_s": round(off_after, 2),
                 "down_s": round(time.monotonic() - down, 1)})  # fmt: skip
