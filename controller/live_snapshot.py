"""The shed's live readings for the staff board, as one JSON document (pure).

`live_snapshot(core, now_ms)` reads the core's ports and bays: no I/O, no
clock. `controller/uplink.py: LiveSender` posts it every few seconds to the
central API, outside the durable outbox: a snapshot that could not be sent is
simply replaced by the next one (docs/uplink-contract.md, "Live snapshots").
"""

from __future__ import annotations

from typing import Any

from controller.core.shed import ShedCore


def live_snapshot(core: ShedCore, now_ms: int) -> dict[str, Any]:
    ports = []
    for number in sorted(core.ports):
        p = core.ports[number]
        s = p.session
        ports.append(
            {
                "port": number,
                "state": p.state.value,
                "since": p.since_ms,
                "w": round(p.w, 1),
                "temp_c": None if p.temp_c is None else round(p.temp_c, 1),
                "relay": p.relay,
                "session": s.id if s is not None else None,
                "session_wh": s.energy_wh if s is not None else None,
                "session_started_ms": s.started_ms if s is not None else None,
                # what the session has cost so far: the resident's order page shows it
                "session_cost_fen": s.usage.cost_so_far_fen(s.tariff, now_ms)
                if s is not None
                else None,
                "disabled_reason": p.disabled_reason,
            }
        )
    bays = [
        {"bay": b.number, "occupied": b.occupied, "since": b.since_ms, "port": b.port}
        for _, b in sorted(core.bays.items())
    ]
    return {"taken_ms": now_ms, "ports": ports, "bays": bays}
