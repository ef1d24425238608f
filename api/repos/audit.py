"""The audit log (api/services/audit.py): append-only rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import AuditEntry

RESULT: Final = "result"  # the action of a row that gives another row's outcome


def add(db: Session, entry: AuditEntry) -> AuditEntry:
    db.add(entry)
    db.flush()
    return entry


def pending_for_command(db: Session, command_id: str) -> Sequence[AuditEntry]:
    return db.scalars(
        select(AuditEntry).where(
            AuditEntry.command_id == command_id, AuditEntry.result == "pending"
        )
    ).all()


def _result_rows(db: Session, command_ids: Iterable[str]) -> Sequence[AuditEntry]:
    ids = sorted(set(command_ids))
    if not ids:
        return []
    return db.scalars(
        select(AuditEntry)
        .where(AuditEntry.action == RESULT, AuditEntry.command_id.in_(ids))
        .order_by(AuditEntry.id)
    ).all()


def _of(row: AuditEntry) -> int | None:
    of = row.data.get("of") if isinstance(row.data, dict) else None
    return of if isinstance(of, int) else None


def answered_for_command(db: Session, command_id: str) -> set[int]:
    """Ids of the rows of `command_id` that already have their result row."""
    return {of for row in _result_rows(db, [command_id]) if (of := _of(row)) is not None}


def entries(
    db: Session,
    *,
    compounds: Iterable[str] | None,
    shed_id: str | None = None,
    limit: int = 100,
) -> Sequence[AuditEntry]:
    """Newest first; `compounds` None: every compound. Result rows are folded into
    the rows they answer (a copy shows the outcome; the stored rows never change)."""
    query = select(AuditEntry).where(AuditEntry.action != RESULT)
    if compounds is not None:
        query = query.where(AuditEntry.compound_id.in_(sorted(compounds)))
    if shed_id is not None:
        query = query.where(AuditEntry.shed_id == shed_id)
    rows = db.scalars(query.order_by(AuditEntry.id.desc()).limit(limit)).all()
    pending = [r.command_id for r in rows if r.result == "pending" and r.command_id]
    outcome = {of: r for r in _result_rows(db, pending) if (of := _of(r)) is not None}
    return [_answered(row, outcome[row.id]) if row.id in outcome else row for row in rows]


def _answered(row: AuditEntry, result: AuditEntry) -> AuditEntry:
    """A detached copy of `row` with the outcome of its result row."""
    copy = AuditEntry(**{c.key: getattr(row, c.key) for c in AuditEntry.__table__.columns})
    copy.result, copy.result_code = result.result, result.result_code
    copy.result_message, copy.result_ms = result.result_message, result.result_ms
    return copy
