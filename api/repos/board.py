"""What the staff board reads besides sockets and alarms: live snapshots and
the per-shed change marks that board streams watch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.models import BoardMark, LiveSnapshot
from api.repos._dialect import insert_ignore
from api.services.shed_watch import mark_after_commit

CHANGED_KEY: Final = "ebshed.board_changed"


def get_snapshot(db: Session, shed_id: str, *, lock: bool = False) -> LiveSnapshot | None:
    query = select(LiveSnapshot).where(LiveSnapshot.shed_id == shed_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.scalar(query)


def snapshots(db: Session, shed_ids: Iterable[str]) -> dict[str, LiveSnapshot]:
    ids = list(shed_ids)
    if not ids:
        return {}
    rows = db.scalars(select(LiveSnapshot).where(LiveSnapshot.shed_id.in_(ids))).all()
    return {row.shed_id: row for row in rows}


def bump(db: Session, shed_id: str, now_ms: int) -> None:
    """Note that the board's view of `shed_id` changed in this transaction;
    streams in this worker are told at commit (api/services/board_watch.py)."""
    insert_ignore(db, BoardMark, {"shed_id": shed_id, "seq": 0, "changed_ms": now_ms})
    db.execute(
        update(BoardMark)
        .where(BoardMark.shed_id == shed_id)
        .values(seq=BoardMark.seq + 1, changed_ms=now_ms)
    )
    mark_after_commit(db, CHANGED_KEY, shed_id)


def marks(db: Session, shed_ids: Iterable[str]) -> dict[str, int]:
    ids = list(shed_ids)
    if not ids:
        return {}
    rows = db.execute(select(BoardMark.shed_id, BoardMark.seq).where(BoardMark.shed_id.in_(ids)))
    return {row[0]: row[1] for row in rows}
