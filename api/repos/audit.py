"""The audit log of staff actions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import AuditEntry


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


def entries(
    db: Session,
    *,
    compounds: Iterable[str] | None,
    shed_id: str | None = None,
    limit: int = 100,
) -> Sequence[AuditEntry]:
    """Newest first; `compounds` None: every compound."""
    query = select(AuditEntry)
    if compounds is not None:
        query = query.where(AuditEntry.compound_id.in_(sorted(compounds)))
    if shed_id is not None:
        query = query.where(AuditEntry.shed_id == shed_id)
    return db.scalars(query.order_by(AuditEntry.id.desc()).limit(limit)).all()
