"""kill -9 at random moments while sessions charge real load, restarted each time.

Twelve sockets with bikes plugged in; orders and card sessions are started and
stopped through the controller's local API, and by tapping the IC card on the
socket's reader (tapped again: stopped), while the controller is killed
with SIGKILL at random moments (some right after a stop, while the close is
in flight) and started again on the same database. At the CI scale: at least
50 kills across at least 500 sessions (EBSHED_FAULT_SCALE scales both).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from tests.faults.harness import CARD, FaultShed, scaled
from tests.faults.invariants import check


def test_kill_9_at_random_moments(make_shed: Callable[..., FaultShed]) -> None:
    kills_wanted, sessions_wanted = scaled(50), scaled(500)
    rng = random.Random(20261204)
    shed = make_shed(seed=3)
    shed.plug_all()
    shed.start_controller()
    started_at: dict[int, float] = {}  # port -> when its session started (test clock)
    age: dict[int, float] = {}  # port -> how long that session should run
    tapped: set[int] = set()  # sessions started by a card tap on the socket
    t0 = time.monotonic()
    while shed.kills < kills_wanted or len(shed.started_ids) < sessions_wanted:
        assert time.monotonic() - t0 < 900, "kill loop takes too long"
        run_for = rng.uniform(0.5, 1.8)
        # Most kills come from another thread at a random moment, whatever the test or
        # the controller is doing (a start or stop may be in flight); the others come
        # right after a stop was answered, while its close is being stored.
        after_stop = rng.random() < 0.25
        killer = None if after_stop else threading.Timer(run_for, shed.kill)
        if killer is not None:
            killer.start()
        cycle_start = time.monotonic()
        until = cycle_start + run_for + 1.0
        ports = shed.ports[:]
        stopped = False
        while shed.alive() and time.monotonic() < until and not stopped:
            rng.shuffle(ports)
            for port in ports:
                now = time.monotonic()
                if port not in started_at:
                    if rng.random() < 0.15:  # the resident taps the card on the socket
                        shed.sim_.tap(port, CARD)
                        tapped.add(port)
                        started_at[port], age[port] = now, rng.uniform(0.3, 3.0)
                        continue
                    kind = "card" if rng.random() < 0.3 else "order"
                    if shed.start_session(port, kind=kind, prepaid_fen=rng.randint(50, 800)):
                        started_at[port], age[port] = now, rng.uniform(0.3, 3.0)
                elif now - started_at[port] >= age[port]:
                    if port in tapped and rng.random() < 0.5:
                        shed.sim_.tap(port, CARD)  # the same card again: card_stop
                        answered = True
                    else:
                        answered = shed.stop_session(port)
                    tapped.discard(port)
                    del started_at[port]
                    if answered and after_stop and now - cycle_start >= run_for / 2:
                        stopped = True
                        break
            time.sleep(rng.uniform(0.0, 0.1))
        if killer is not None:
            killer.join()
        if shed.alive():
            shed.kill()
        shed.start_controller()
        # The restarted controller knows which sockets still run a session.
        busy = {p["port"] for p in shed.status()["ports"] if p["session"] is not None}
        for port in list(started_at):
            if port not in busy:
                del started_at[port]
                tapped.discard(port)
        for port in busy - set(started_at):
            started_at[port], age[port] = time.monotonic(), rng.uniform(0.3, 2.0)
    shed.settle()
    check(shed, "kill -9 loop", extra={"seconds": round(time.monotonic() - t0)})
