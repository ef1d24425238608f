"""Sockets and parking bays as the sheds last reported them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import Bay, Socket


def get_socket(db: Session, shed_id: str, port: int) -> Socket | None:
    return db.get(Socket, (shed_id, port))


def list_sockets(db: Session, shed_id: str) -> Sequence[Socket]:
    return db.scalars(select(Socket).where(Socket.shed_id == shed_id).order_by(Socket.port)).all()


def get_bay(db: Session, shed_id: str, number: int) -> Bay | None:
    return db.get(Bay, (shed_id, number))


def list_bays(db: Session, shed_id: str) -> Sequence[Bay]:
    return db.scalars(select(Bay).where(Bay.shed_id == shed_id).order_by(Bay.number)).all()
