"""Commands queued for sheds."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.models import Command


def get_command(
    db: Session, shed_id: str, command_id: str, *, lock: bool = False
) -> Command | None:
    query = select(Command).where(Command.id == command_id, Command.shed_id == shed_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.scalar(query)


def commands_after(db: Session, shed_id: str, after_seq: int, limit: int) -> Sequence[Command]:
    return db.scalars(
        select(Command)
        .where(Command.shed_id == shed_id, Command.seq > after_seq)
        .order_by(Command.seq)
        .limit(limit)
    ).all()


def list_commands(db: Session, shed_id: str, limit: int) -> Sequence[Command]:
    """Newest first."""
    return db.scalars(
        select(Command).where(Command.shed_id == shed_id).order_by(Command.seq.desc()).limit(limit)
    ).all()


def mark_delivered(db: Session, command_ids: Sequence[str], now_ms: int) -> None:
    """Note when commands were first handed to their shed."""
    if not command_ids:
        return
    db.execute(
        update(Command)
        .where(Command.id.in_(command_ids), Command.delivered_ms.is_(None))
        .values(delivered_ms=now_ms)
        .execution_options(synchronize_session=False)
    )


def unanswered_commands(
    db: Session, *, kind: str, created_before_ms: int, limit: int = 100
) -> Sequence[Command]:
    """Commands of `kind` still without a result, created before a time (oldest first).

    For sweeps such as "refund a paid order whose start has no result after 30 s".
    """
    return db.scalars(
        select(Command)
        .where(
            Command.result_ms.is_(None),
            Command.created_ms < created_before_ms,
            Command.kind == kind,
        )
        .order_by(Command.created_ms)
        .limit(limit)
    ).all()
