"""Compounds (tenants)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import Compound


def get_compound(db: Session, compound_id: str) -> Compound | None:
    return db.get(Compound, compound_id)


def add_compound(db: Session, compound_id: str, name: str, now_ms: int) -> Compound:
    row = Compound(id=compound_id, name=name, created_ms=now_ms)
    db.add(row)
    db.flush()
    return row


def list_compounds(db: Session) -> Sequence[Compound]:
    return db.scalars(select(Compound).order_by(Compound.id)).all()
