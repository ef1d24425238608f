"""Unserved demand: residents who came to charge and found no free socket.

Two sources (docs/reports.md):

- `scan`: the resident page of a socket opened from its QR sticker
  (`?src=qr`) while that socket was not free and no socket in the shed was
  idle;
- `card`: a card tap the shed refused because the socket was busy or the
  shed was at its power limit (the shed's `demand` uplink record), counted
  when no socket in the shed was idle as the API last heard (or the power
  limit was the reason).

The same visitor (a salted hash of a browser cookie or a card uid) counts
once per shed within 30 minutes. Each event adds to the rollups in the same
transaction (api/reports/rollups.py).
"""

from __future__ import annotations

import hashlib
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.models import DemandEvent, Shed, Socket
from api.reports import rollups
from controller.uplink_records import DEMAND_REFUSALS

DEDUP_MS: Final = 30 * 60_000
FREE_STATE: Final = "idle"
# The refusals the shed reports (controller/core/shed.py can_start): the socket's
# state when it is not idle, or the power budget. These mean "no room to charge".
FULL_SHED_REFUSAL: Final = "over_budget"
BUSY_REFUSALS: Final = DEMAND_REFUSALS - {FULL_SHED_REFUSAL}
_SALT: Final = "ebshed-demand-v1"


def visitor_key(kind: str, raw: str) -> str:
    """A stable, non-reversible key of a visitor (no cookie or card uid is stored)."""
    return hashlib.sha256(f"{_SALT}:{kind}:{raw}".encode()).hexdigest()[:32]


def no_free_socket(db: Session, shed_id: str) -> bool:
    """True when the shed has sockets and none of them is idle, as last reported."""
    states = db.execute(
        select(Socket.state, func.count()).where(Socket.shed_id == shed_id).group_by(Socket.state)
    ).all()
    return bool(states) and all(state != FREE_STATE for state, _n in states)


def record_scan(db: Session, shed_id: str, port: int, visitor: str, now_ms: int) -> bool:
    """A QR scan of socket `port`: a demand event if it found no free socket."""
    socket = db.get(Socket, (shed_id, port))
    if socket is None or socket.state == FREE_STATE or not no_free_socket(db, shed_id):
        return False
    return record_demand(
        db, shed_id, port=port, source="scan", visitor=visitor, at_ms=now_ms, now_ms=now_ms
    )


def record_card_refusal(
    db: Session, shed_id: str, *, port: int, reason: str, card: str, at_ms: int, now_ms: int
) -> bool:
    """A card tap the shed refused (its `demand` record)."""
    if reason == FULL_SHED_REFUSAL:
        counts = True
    else:
        counts = reason in BUSY_REFUSALS and no_free_socket(db, shed_id)
    if not counts:
        return False
    visitor = visitor_key("card", card)
    return record_demand(
        db, shed_id, port=port, source="card", visitor=visitor, at_ms=at_ms, now_ms=now_ms
    )


def record_demand(
    db: Session,
    shed_id: str,
    *,
    port: int | None,
    source: str,
    visitor: str,
    at_ms: int,
    now_ms: int,
) -> bool:
    """Store the event unless the visitor already counted here within DEDUP_MS."""
    # One writer per shed at a time, so two scans of the same visitor count once
    # (SQLite transactions are already serial: BEGIN IMMEDIATE).
    db.execute(select(Shed.id).where(Shed.id == shed_id).with_for_update())
    recent = db.scalar(
        select(DemandEvent.id)
        .where(
            DemandEvent.shed_id == shed_id,
            DemandEvent.visitor == visitor,
            DemandEvent.at_ms > at_ms - DEDUP_MS,
            DemandEvent.at_ms < at_ms + DEDUP_MS,
        )
        .limit(1)
    )
    if recent is not None:
        return False
    db.add(
        DemandEvent(
            shed_id=shed_id,
            port=port,
            source=source,
            visitor=visitor,
            at_ms=at_ms,
            received_ms=now_ms,
        )
    )
    rollups.add_unserved(db, shed_id, at_ms)
    return True
