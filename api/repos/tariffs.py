"""Tariffs, versioned: (id, version) is written once and never changed."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import Tariff


def get_tariff(db: Session, tariff_id: str, version: int) -> Tariff | None:
    return db.get(Tariff, (tariff_id, version))


def latest_tariff(db: Session, tariff_id: str) -> Tariff | None:
    return db.scalar(
        select(Tariff).where(Tariff.id == tariff_id).order_by(Tariff.version.desc()).limit(1)
    )
