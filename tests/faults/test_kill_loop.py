"""kill -9 at random moments while sessions charge real load, restarted each time.

Twelve sockets with bikes plugged in; orders and card sessions are started and
stopped through the controller's local API while the controller is killed
with SIGKILL at random moments (some right after a stop, while the close is
in flight) and started again on the same database. At the CI scale: at least
50 kills across at least 500 sessions (EBSHED_FAULT_SCALE scales both).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from tests.faults.harness import FaultShed, scaled
from tests.faults.invariants import check


def test_kill_9_at_random_moments(make_shed: Callable[..., FaultShed]) -> None:
    kills_wanted, sessions_wanted = scaled(50), scaled(500)
    rng = random.Random(20261204)
    shed = make_shed(seed=3)
    shed.plug_all()
    shed.start_controller()
    started_at: dict[int, float] = {}  # port -> when its session started (test clock)
    age: dict[int, float] = {}  # port -> how long that session should run
    t0 = time.monotonic()
    while shed.kills < kills_wanted or len(shed.started_ids) < sessions_wanted:
        assert time.monotonic() - t0 < 900, "kill loop takes too long"
        run_for = rng.uniform(0.8, 2.5)
        kill_after_stop = rng.random() < 0.3
        until = time.monotonic() + run_for
        ports = shed.ports[:]
        while time.monotonic() < until:
            rng.shuffle(ports)
            for port in ports:
                now = time.monotonic()
                if port not in started_at:
                    kind = "card" if rng.random() < 0.3 else "order"
                    if shed.start_session(port, kind=kind, prepaid_fen=rng.randint(50, 800)):
                        started_at[port], age[port] = now, rng.uniform(0.3, 3.0)
                elif now - started_at[port] >= age[port]:
                    shed.stop_session(port)
                    del started_at[port]
                    if kill_after_stop and rng.random() < 0.5:
                        break
            else:
                time.sleep(rng.uniform(0.0, 0.15))
                continue
            break  # kill right after a stop
        shed.kill()
        shed.start_controller()
        # The restarted controller knows which sockets still run a session.
        busy = {p["port"] for p in shed.status()["ports"] if p["session"] is not None}
        for port in list(started_at):
            if port not in busy:
                del started_at[port]
        for port in busy - set(started_at):
            started_at[port], age[port] = time.monotonic(), rng.uniform(0.3, 2.0)
    shed.settle()
    check(shed, "kill -9 loop", extra={"seconds": round(time.monotonic() - t0)})
