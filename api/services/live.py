"""Live snapshots from sheds: the newest one per shed is kept (in the database,
so every worker's board sees it); an older one than stored changes nothing."""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.models import LiveSnapshot
from api.repos import board
from api.schemas.live import LiveIn


def store_snapshot(db: Session, shed_id: str, body: LiveIn, *, now_ms: int) -> bool:
    """Keep `body` as the shed's live snapshot unless a later one is stored."""
    row = board.get_snapshot(db, shed_id, lock=True)
    if row is not None and row.taken_ms >= body.taken_ms:
        return False
    if row is None:
        row = LiveSnapshot(shed_id=shed_id)
        db.add(row)
    row.taken_ms = body.taken_ms
    row.received_ms = now_ms
    row.data = body.model_dump(mode="json")
    board.bump(db, shed_id, now_ms)
    return True
