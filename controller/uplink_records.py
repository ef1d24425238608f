"""Outbox records for the central API, made from the core's actions (pure).

Each record is `(kind, key, ts_ms, data)`; the store gives it the next version
of its key when it is written (docs/uplink-contract.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from controller.core.model import (
    Action,
    AlarmChanged,
    BayChanged,
    CardRefused,
    PublishState,
    Session,
    SessionCheckpoint,
    SessionClosed,
    SessionOpened,
)
from controller.core.tariffs import Tariff, bill_to_dict, tariff_to_dict

Record = tuple[str, str, int, dict[str, Any]]  # kind, key, ts_ms, data

# Card refusals that mean "no room to charge" (the socket's state, or the shed's
# power limit), reported as `demand` records for the unserved-demand report.
DEMAND_REFUSALS = frozenset(
    {
        "authorized",
        "charging",
        "floating",
        "finishing",
        "fault",
        "disabled",
        "offline",
        "over_budget",
    }
)


def session_data(s: Session) -> dict[str, Any]:
    return {
        "id": s.id,
        "port": s.port,
        "auth": {
            "kind": s.auth.kind,
            "ref": s.auth.ref,
            "prepaid_fen": s.auth.prepaid_fen,
            "mode": s.auth.mode,
        },
        "tariff": tariff_to_dict(s.tariff),
        "started_ms": s.started_ms,
        "stop_ms": s.stop_ms,
        "ended_ms": s.ended_ms,
        "end_reason": s.end_reason,
        "first_wh": s.first_wh,
        "last_wh": s.last_wh,
        "energy_wh": s.energy_wh,
        "peak_w": s.peak_w,
        "w": s.w,
        "cost_fen": s.usage.cost_so_far_fen(s.tariff),
        "billed_fen": s.charged_fen,
        "refund_fen": s.refund_fen,
        "bill": bill_to_dict(s.bill) if s.bill is not None else None,
        "flags": sorted(s.flags),
        "reasons": [list(r) for r in s.reasons],
    }


def tariff_record(tariff: Tariff, now_ms: int) -> Record:
    """The tariff the shed bills new sessions at, for the central API's pages."""
    return ("tariff", "current", now_ms, {"tariff": tariff_to_dict(tariff)})


@dataclass
class RecordMaker:
    """Remembers the last socket state sent, so only changes become records."""

    sent_states: dict[int, str] = field(default_factory=dict)

    def records_for(self, action: Action, now_ms: int) -> list[Record]:
        if isinstance(action, SessionOpened | SessionCheckpoint | SessionClosed):
            s = action.session
            return [("session", s.id, now_ms, session_data(s))]
        if isinstance(action, PublishState):
            if self.sent_states.get(action.port) == action.state:
                return []
            self.sent_states[action.port] = action.state
            return [
                (
                    "socket",
                    str(action.port),
                    now_ms,
                    {
                        "port": action.port,
                        "state": action.state,
                        "since": action.since,
                        "session": action.session,
                    },
                )
            ]
        if isinstance(action, AlarmChanged):
            return [("alarm", action.alarm.id, now_ms, dataclasses.asdict(action.alarm))]
        if isinstance(action, BayChanged):
            return [
                (
                    "bay",
                    str(action.bay),
                    now_ms,
                    {"bay": action.bay, "occupied": action.occupied, "since": action.since_ms},
                )
            ]
        if isinstance(action, CardRefused) and action.reason in DEMAND_REFUSALS:
            data = {
                "source": "card",
                "port": action.port,
                "reason": action.reason,
                "card": action.uid,
                "at_ms": now_ms,
            }
            return [("demand", f"card-{action.port}-{now_ms}", now_ms, data)]
        return []
