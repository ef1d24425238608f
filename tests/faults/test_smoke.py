"""Smoke at peak load with one relay that never acknowledges.

Every socket charges and the shed draws what its budget allows; one socket's
relay driver hangs (its commands are neither carried out nor acknowledged,
its lease timer still runs). The smoke sensor goes off: every other relay
must be off within 1 s, the silent one's off is sent again, and it is raised
as `relay_fault`; the smoke alarm and the relay fault are recorded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from tests.faults.harness import FaultShed, wait_for
from tests.faults.invariants import check

SILENT = 5


def test_smoke_at_peak_load_with_a_silent_relay(make_shed: Callable[..., FaultShed]) -> None:
    shed = make_shed(seed=31)
    shed.plug_all()
    peak_w = shed.sim_.bike_power()
    # The budget is what the shed draws with every socket on (the chargers' ripple aside).
    shed.rules.update(budget_w=math.ceil(peak_w / 0.97), budget_start_fraction=1.0)
    shed.write_config()
    shed.start_controller()
    for i, port in enumerate(shed.ports):
        kind = "card" if i % 3 == 0 else "order"
        started = shed.start_session(port, kind=kind, prepaid_fen=900)
        assert started, f"socket {port} refused: {shed.last_refusal}"
    wait_for(lambda: all(shed.sim_.relays().values()), 5, "every socket on")
    time.sleep(1.5)
    load_w = sum(shed.sim_.powers().values())
    shed.sim_.silence(SILENT)
    smoke_at = time.monotonic()
    shed.sim_.set_smoke(True)
    others = [p for p in shed.ports if p != SILENT]
    wait_for(lambda: not any(on for p, on in shed.sim_.relays().items() if p in others), 5,
             "every other relay off", step=0.01)  # fmt: skip
    off_s = time.monotonic() - smoke_at
    assert off_s <= 1.0, f"relays off {off_s:.2f} s after the smoke alarm"

    def relay_fault() -> bool:
        return any(r["kind"] == "relay_fault" and r["port"] == SILENT
                   for r in shed.query("SELECT kind, port FROM alarms"))  # fmt: skip

    wait_for(relay_fault, 40, f"relay_fault raised for socket {SILENT}", step=0.2)
    fault_s = time.monotonic() - smoke_at
    offs = shed.sim_.ignored(SILENT).count("off")
    assert offs >= 2, f"the silent relay's off was sent {offs} time(s), not retried"
    shed.sim_.set_smoke(False)
    time.sleep(1.0)
    shed.settle()
    check(shed, "smoke at peak load, one silent relay", expect_alarms=("smoke", "relay_fault"),
          extra={"load_w": round(load_w), "budget_w": shed.rules["budget_w"],
                 "others_off_s": round(off_s, 3), "relay_fault_s": round(fault_s, 1),
                 "silent_offs_sent": offs})  # fmt: skip
