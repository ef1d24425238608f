"""Alarms as the sheds reported them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
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
