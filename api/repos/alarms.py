"""Alarms as the sheds reported them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from api.models import Alarm


def get_alarm(db: Session, shed_id: str, alarm_id: str) -> Alarm | None:
    return db.get(Alarm, (shed_id, alarm_id))


def list_alarms(db: Session, shed_id: str, *, active_only: bool = False) -> Sequence[Alarm]:
    query = select(Alarm).where(Alarm.shed_id == shed_id)
    if active_only:
        query = query.where(Alarm.active)
    return db.scalars(query.order_by(Alarm.raised_ms.desc())).all()


def count_active_alarms(db: Session, shed_id: str) -> int:
    query = select(func.count()).select_from(Alarm).where(Alarm.shed_id == shed_id, Alarm.active)
    return int(db.scalar(query) or 0)


def alarms_of(
    db: Session, shed_ids: Sequence[str], *, open_only: bool, limit: int
) -> Sequence[Alarm]:
    """Alarms of these sheds, newest first; `open_only`: active or not yet acknowledged."""
    if not shed_ids:
        return []
    query = select(Alarm).where(Alarm.shed_id.in_(list(shed_ids)))
    if open_only:
        query = query.where(or_(Alarm.active, Alarm.acked_ms.is_(None)))
    return db.scalars(
        query.order_by(Alarm.raised_ms.desc(), Alarm.shed_id, Alarm.id).limit(limit)
    ).all()
