"""IC cards and monthly plans of a compound."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.models import Card, MonthlyPlan


def get_card(db: Session, compound_id: str, uid: str, *, lock: bool = False) -> Card | None:
    query = select(Card).where(Card.compound_id == compound_id, Card.uid == uid)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.scalar(query)


def list_cards(db: Session, compound_id: str, limit: int = 1000) -> Sequence[Card]:
    return db.scalars(
        select(Card).where(Card.compound_id == compound_id).order_by(Card.uid).limit(limit)
    ).all()


def plan_until(db: Session, compound_id: str, uid: str) -> int | None:
    """The end of the card's last monthly plan, if it has one."""
    return db.scalar(
        select(func.max(MonthlyPlan.ends_ms)).where(
            MonthlyPlan.compound_id == compound_id, MonthlyPlan.card_uid == uid
        )
    )


def plans(db: Session, compound_id: str, uid: str) -> Sequence[MonthlyPlan]:
    return db.scalars(
        select(MonthlyPlan)
        .where(MonthlyPlan.compound_id == compound_id, MonthlyPlan.card_uid == uid)
        .order_by(MonthlyPlan.starts_ms)
    ).all()
