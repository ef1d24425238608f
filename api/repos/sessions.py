"""Charging sessions as the sheds reported them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import ChargeSession


def get_session(db: Session, shed_id: str, session_id: str) -> ChargeSession | None:
    return db.get(ChargeSession, (shed_id, session_id))


def sessions_for_order(db: Session, order_no: str) -> Sequence[ChargeSession]:
    """Sessions started for a scan-to-pay order (normally one)."""
    return db.scalars(
        select(ChargeSession)
        .where(ChargeSession.order_no == order_no)
        .order_by(ChargeSession.started_ms)
    ).all()


def list_sessions(
    db: Session, shed_id: str, *, open_only: bool = False, limit: int = 100
) -> Sequence[ChargeSession]:
    """Newest first."""
    query = select(ChargeSession).where(ChargeSession.shed_id == shed_id)
    if open_only:
        query = query.where(ChargeSession.ended_ms.is_(None))
    query = query.order_by(ChargeSession.started_ms.desc(), ChargeSession.id).limit(limit)
    return db.scalars(query).all()
