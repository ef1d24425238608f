"""Charging sessions as the sheds reported them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session, defer

from api.models import ChargeSession
from api.repos._dialect import Upsert, one_of, upsert

_TABLE: Table = ChargeSession.__table__  # type: ignore[assignment]
_KEEP = ("shed_id", "id", "closed_received_ms")
_UPSERT = Upsert(
    _TABLE,
    ("shed_id", "id"),
    {
        **{c.name: f"excluded.{c.name}" for c in _TABLE.c if c.name not in _KEEP},
        "closed_received_ms": (
            "coalesce(excluded.closed_received_ms, charge_sessions.closed_received_ms)"
        ),
    },
    ("id",),
)


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


def stored_closed(db: Session, shed_id: str, session_ids: Sequence[str]) -> dict[str, bool]:
    """Of these sessions, those stored: whether each is closed (one statement)."""
    if not session_ids:
        return {}
    c = ChargeSession
    rows = db.execute(
        select(c.id, c.ended_ms).where(c.shed_id == shed_id, one_of(db, c.id, session_ids))
    )
    return {row.id: row.ended_ms is not None for row in rows}


def get_sessions(db: Session, shed_id: str, session_ids: Sequence[str]) -> Sequence[ChargeSession]:
    """These sessions; their JSON documents are read when used (hooks seldom do)."""
    c = ChargeSession
    return db.scalars(
        select(c)
        .where(c.shed_id == shed_id, one_of(db, c.id, session_ids))
        .options(defer(c.tariff), defer(c.flags), defer(c.bill), defer(c.data))
        .order_by(c.id)
    ).all()


def upsert_sessions(db: Session, rows: list[dict[str, Any]]) -> None:
    """Insert or replace these session rows (every column; one row per session),
    in one statement. `closed_received_ms` is kept unless the row sets it."""
    upsert(db, _UPSERT, rows)
