"""The few statements that are spelled differently on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, any_, bindparam, literal_column
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session

# The statements `upsert` runs, made once per (dialect, statement).
_MADE: dict[tuple[str, int], Any] = {}  # a SQLAlchemy statement, or SQL text


@dataclass(frozen=True, slots=True, eq=False)
class Upsert:
    """`INSERT INTO table ... ON CONFLICT (keys) DO UPDATE SET column = expression
    ... RETURNING ...`. The expressions are SQL that both databases read, naming
    the stored row by the table's name and the new one `excluded`."""

    table: Table
    keys: tuple[str, ...]
    set_: Mapping[str, str]
    returning: tuple[str, ...]
    where: str | None = None  # update only the stored rows where this holds


def one_of(db: Session, column: Any, values: Sequence[Any]) -> Any:
    """`column IN (values)`; on PostgreSQL `column = ANY(array)`: one bound
    value, so the SQL is the same whatever the number of values."""
    if db.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def insert_ignore(db: Session, model: type[DeclarativeBase], values: dict[str, Any]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING (on the primary key)."""
    table: Any = model.__table__
    if db.get_bind().dialect.name == "postgresql":
        db.execute(postgresql.insert(table).values(values).on_conflict_do_nothing())
    else:
        db.execute(sqlite.insert(table).values(values).on_conflict_do_nothing())


def upsert(db: Session, statement: Upsert, rows: list[dict[str, Any]]) -> list[Any]:
    """Run `statement` over all `rows` (dicts of every column) in one go; the
    RETURNING rows.

    PostgreSQL: one statement whatever the number of rows, the rows passed as
    one JSON document (`INSERT ... SELECT ... FROM json_to_recordset(...)`),
    so the SQL text stays the same and small (psycopg prepares it once) and
    the values are parsed by the server. SQLite: the same upsert over the
    rows (SQLAlchemy's multi-row VALUES)."""
    if not rows:
        return []
    name = db.get_bind().dialect.name
    made: Any = _MADE.get((name, id(statement)))
    if made is None:
        made = _MADE[(name, id(statement))] = (
            _postgres_sql(statement) if name == "postgresql" else _sqlite_insert(statement)
        )
    if name != "postgresql":
        return list(db.execute(made, rows).all())
    return list(db.connection().exec_driver_sql(made, (json.dumps(rows),)).all())


def _postgres_sql(s: Upsert) -> str:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    columns = ", ".join(c.name for c in s.table.columns)
    types = ", ".join(f"{c.name} {c.type.compile(dialect=dialect)}" for c in s.table.columns)
    sets = ", ".join(f"{c} = {expr}" for c, expr in s.set_.items())
    return (
        f"INSERT INTO {s.table.name} ({columns}) SELECT {columns} "
        f"FROM json_to_recordset(%s::json) AS v({types}) "
        f"ON CONFLICT ({', '.join(s.keys)}) DO UPDATE SET {sets} "
        + (f"WHERE {s.where} " if s.where else "")
        + f"RETURNING {', '.join(s.returning)}"
    )


def _sqlite_insert(s: Upsert) -> Any:
    stmt = sqlite.insert(s.table)
    return stmt.on_conflict_do_update(
        index_elements=list(s.keys),
        set_={c: literal_column(expr) for c, expr in s.set_.items()},
        where=literal_column(s.where) if s.where else None,
    ).returning(*(s.table.c[c] for c in s.returning))
