"""A shed's status at a glance (the resident page and the staff board start here)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.errors import NotFound
from api.repos import alarms, sheds, sockets
from api.schemas.sheds import BayView, ShedStatus, SocketView

FREE_STATE = "idle"


def shed_status(db: Session, shed_id: str, *, now_ms: int, offline_after_ms: int) -> ShedStatus:
    shed = sheds.get_shed(db, shed_id)
    if shed is None:
        raise NotFound(f"no shed {shed_id}", code="unknown_shed")
    online = shed.last_seen_ms is not None and now_ms - shed.last_seen_ms <= offline_after_ms
    socket_rows = sockets.list_sockets(db, shed_id)
    bay_rows = sockets.list_bays(db, shed_id)
    return ShedStatus(
        shed_id=shed.id,
        name=shed.name,
        compound_id=shed.compound_id,
        online=online,
        last_seen_ms=shed.last_seen_ms,
        # An offline shed cannot start a session, whatever its sockets said last.
        free_sockets=sum(1 for s in socket_rows if s.state == FREE_STATE) if online else 0,
        free_bays=sum(1 for b in bay_rows if not b.occupied),
        active_alarms=alarms.count_active_alarms(db, shed_id),
        sockets=[SocketView.model_validate(s) for s in socket_rows],
        bays=[BayView.model_validate(b) for b in bay_rows],
    )
