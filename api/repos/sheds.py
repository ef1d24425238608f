"""Sheds: identity, token hash, liveness and the command counter."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from api.models import Shed


def get_shed(db: Session, shed_id: str) -> Shed | None:
    return db.get(Shed, shed_id)


def get_shed_by_token_hash(db: Session, token_hash: str) -> Shed | None:
    return db.scalar(select(Shed).where(Shed.token_hash == token_hash))


def list_sheds(db: Session, compound_id: str | None = None) -> Sequence[Shed]:
    query = select(Shed).order_by(Shed.id)
    if compound_id is not None:
        query = query.where(Shed.compound_id == compound_id)
    return db.scalars(query).all()


def add_shed(
    db: Session, shed_id: str, name: str, compound_id: str, token_hash: str, now_ms: int
) -> Shed:
    row = Shed(
        id=shed_id,
        name=name,
        compound_id=compound_id,
        token_hash=token_hash,
        created_ms=now_ms,
        last_seen_ms=None,
        command_seq=0,
    )
    db.add(row)
    db.flush()
    return row


def touch_last_seen(db: Session, shed_id: str, now_ms: int, *, min_step_ms: int) -> None:
    """Note that the shed called, at most once per `min_step_ms` (saves writes)."""
    db.execute(
        update(Shed)
        .where(Shed.id == shed_id)
        .where(or_(Shed.last_seen_ms.is_(None), Shed.last_seen_ms <= now_ms - min_step_ms))
        .values(last_seen_ms=now_ms)
    )


def next_command_seq(db: Session, shed_id: str) -> int | None:
    """Take the shed's next command seq; None if there is no such shed.

    The UPDATE locks the shed row until the caller commits, so a second
    enqueue for the same shed waits: seqs become visible in order, and a
    long poll that has seen seq n can never later find a new seq below n.
    """
    return db.scalar(
        update(Shed)
        .where(Shed.id == shed_id)
        .values(command_seq=Shed.command_seq + 1)
        .returning(Shed.command_seq)
    )


def command_seqs(db: Session, shed_ids: Iterable[str]) -> dict[str, int]:
    """The highest command seq of each of these sheds (one query)."""
    ids = list(shed_ids)
    if not ids:
        return {}
    rows = db.execute(select(Shed.id, Shed.command_seq).where(Shed.id.in_(ids)))
    return {row[0]: row[1] for row in rows}
