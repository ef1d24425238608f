"""Database plumbing: engines, sessions and migrations.

SQLite (a file, WAL) is for the demo and tests; PostgreSQL (psycopg 3) for
production. Both run the same Alembic migrations (`api/migrations/`): the
schema is never made with `create_all`.

SQLite transactions start with `BEGIN IMMEDIATE`: a writer takes the write
lock before it reads, so two workers never read the same version and then
both write (SQLite would otherwise fail one of them with "database is
locked" instead of waiting). On PostgreSQL, rows are locked explicitly
(`SELECT ... FOR UPDATE`) where an order matters.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
# Any constant will do: it only has to be the same in every worker.
_MIGRATION_LOCK_KEY: Final = 0x65627368  # "ebsh"


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 (the driver we install)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(*, foreign_keys: bool) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cur.close()

    return on_connect


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = 10,
    max_overflow: int = 20,
    foreign_keys: bool = True,
) -> Engine:
    """An engine for `url`. `foreign_keys=False` is for SQLite migrations only
    (table rebuilds in batch migrations must not cascade)."""
    url = normalize_url(url)
    pool = {"pool_size": pool_size, "max_overflow": max_overflow}
    if url.startswith("sqlite"):
        if url in ("sqlite://", "sqlite:///:memory:"):
            raise ValueError("the API needs a SQLite file (several threads share it), not :memory:")
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False}, **pool)
        event.listen(engine, "connect", _sqlite_pragmas(foreign_keys=foreign_keys))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, **pool)


def make_sessionmaker(engine: Engine, **info: Any) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit. `info` lands in `Session.info`."""
    return sessionmaker(engine, expire_on_commit=False, info=info)


# ---------------------------------------------------------------- migrations


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config built in code (api/alembic.ini is the same, for the CLI)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.attributes["database_url"] = normalize_url(url)
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """`alembic upgrade head`, safe to run from several workers at once."""
    engine = make_engine(url, pool_size=1, max_overflow=0, foreign_keys=False)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Held until commit: a second worker waits, then finds nothing to do.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_schema(engine: Engine) -> None:
    """Refuse to serve a database whose schema is not at the newest migration."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise RuntimeError(
            f"database schema is at revision {current}, this code needs {head}: "
            "run `python -m api migrate` (or set EBSHED_API_AUTO_MIGRATE=true)"
        )
