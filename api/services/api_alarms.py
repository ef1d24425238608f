"""Alarms the API raises itself, on the same list as the sheds' alarms:

- `refund_failed` (api/services/refunds.py): money owed to a payer that the
  provider would not pay back; needs staff.
- `payment_conflict` (api/services/orders_payments.py): a provider notification
  with the ids of a payment already applied but another order or amount;
  refused and recorded, needs staff to look at it with the provider.
- `shed_offline`: a shed that has reported before and has not been heard
  from for `shed_offline_after_s`. Cleared when it reports again.

A shed cannot acknowledge these (it never raised them): staff acknowledge
them on the board directly. `sweep_offline` runs in every worker
(api/services/staff_runtime.py); the alarm id is derived from the last time
the shed was seen, and the insert ignores a row another worker made, so a
silence raises one alarm.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import Alarm, Shed
from api.repos import board
from api.repos._dialect import insert_ignore

API_ALARM_KINDS: Final = frozenset({"payment_conflict", "refund_failed", "shed_offline"})
OFFLINE: Final = "shed_offline"


def offline_alarm_id(last_seen_ms: int) -> str:
    return f"api-offline-{last_seen_ms}"


def sweep_offline(db: Session, *, now_ms: int, offline_after_ms: int) -> list[str]:
    """Raise `shed_offline` for silent sheds, clear it for those heard again.
    Returns the sheds whose alarms changed."""
    changed: list[str] = []
    active = {
        (a.shed_id, a.id): a
        for a in db.scalars(select(Alarm).where(Alarm.kind == OFFLINE, Alarm.active)).all()
    }
    for shed in db.scalars(select(Shed).where(Shed.last_seen_ms.is_not(None))).all():
        assert shed.last_seen_ms is not None
        silent = now_ms - shed.last_seen_ms > offline_after_ms
        alarm_id = offline_alarm_id(shed.last_seen_ms)
        for (shed_id, other_id), alarm in active.items():
            if shed_id == shed.id and (not silent or other_id != alarm_id):
                alarm.active, alarm.cleared_ms, alarm.updated_ms = False, now_ms, now_ms
                changed.append(shed.id)
        if silent and (shed.id, alarm_id) not in active:
            minutes = (now_ms - shed.last_seen_ms) // 60_000
            insert_ignore(db, Alarm, {
                "shed_id": shed.id, "id": alarm_id, "kind": OFFLINE,
                "raised_ms": now_ms, "active": True, "reported_ms": now_ms, "updated_ms": now_ms,
                "detail": f"车棚离线 shed offline: nothing heard for {minutes} min",
                "port": None, "bay": None, "board": None, "sensor": None, "acked_ms": None,
                "acked_by": None, "note": None, "cleared_ms": None, "ack_command_id": None,
            })  # fmt: skip
            changed.append(shed.id)
    for shed_id in dict.fromkeys(changed):
        board.bump(db, shed_id, now_ms)
    return list(dict.fromkeys(changed))
