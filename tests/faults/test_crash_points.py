"""A crash at every step of storing a start and a close, then a restart.

`EBSHED_CRASH_AT` arms one point of controller/faults.py: the controller
process ends at once (exit 86, as a kill -9) the first time it reaches it.
The same workload runs for every point: a card session and an order charge,
then are stopped. The process must end at the point (a point never reached
fails the test), and after a restart on the same database every invariant
holds: the close, its bill, the card debit and the outbox record are all
there, or the session is closed again from the registers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.faults.harness import FaultShed, wait_for
from tests.faults.invariants import check

POINTS = (
    "open:before_commit",
    "open:after_commit",
    "close:before_commit",
    "close:after_commit",
    "outbox:after_enqueue",
)
CRASH_EXIT = 86


@pytest.mark.parametrize("point", POINTS)
def test_crash_at_point_then_restart(make_shed: Callable[..., FaultShed], point: str) -> None:
    shed = make_shed(seed=11)
    shed.plug_all([1, 2, 7])
    shed.start_controller(crash_at=point, wait=False)
    # Some points come before the first session (the outbox gets socket records as
    # soon as the boards report): a crash while starting up counts too.
    wait_for(lambda: not shed.alive() or shed.ready(), 30, "controller ready or crashed")
    if shed.alive():
        shed.start_session(1, kind="card", prepaid_fen=600)
    if shed.alive():
        shed.start_session(7, kind="order", prepaid_fen=400)
    deadline = time.monotonic() + 3.0
    while shed.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if shed.alive():
        shed.stop_session(1)
        shed.stop_session(7)
    code = wait_for(lambda: shed.proc is not None and shed.proc.poll() is not None, 15,
                    f"controller reaching crash point {point}")  # fmt: skip
    assert code and shed.proc is not None
    assert shed.proc.returncode == CRASH_EXIT, (
        f"controller ended with {shed.proc.returncode}, not at {point}: {shed.log_tail()}"
    )
    shed.crashed(point)
    shed.start_controller()
    # The restarted controller goes on: a new session starts and bills normally.
    assert shed.start_session(2, kind="order", prepaid_fen=300) is not None
    time.sleep(1.5)
    shed.settle()
    check(shed, f"crash at {point}")
