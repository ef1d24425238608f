"""The few statements that are spelled differently on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session


def insert_ignore(db: Session, model: type[DeclarativeBase], values: dict[str, Any]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING (on the primary key)."""
    table: Any = model.__table__
    if db.get_bind().dialect.name == "postgresql":
        db.execute(postgresql.insert(table).values(values).on_conflict_do_nothing())
    else:
        db.execute(sqlite.insert(table).values(values).on_conflict_do_nothing())
