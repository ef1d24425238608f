"""Versions of the edge database, and the steps that upgrade one to the next.

The shed's SQLite file outlives the code that wrote it: a controller upgraded
in place opens the previous release's file. `upgrade(conn)` reads the version
in the `meta` table and runs, in one transaction, every step from there to
`SCHEMA_VERSION`; a new database is created at the newest version directly.
A file newer than this code is refused (`StoreTooNew`), never written.
Why a small runner and not Alembic: docs/decisions/0010-edge-schema-migrations.md.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, MetaData, inspect, text

SCHEMA_VERSION = 2


class StoreTooNew(RuntimeError):
    """The database was written by a newer release of the controller."""


def _v2_open_alarm_indexes(conn: Connection) -> None:
    """Open alarms are read at every start; the table keeps every alarm ever raised."""
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_alarms_active ON alarms (active)"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_alarms_acked_ms ON alarms (acked_ms)"))


# Step N upgrades a database at version N-1 to version N.
STEPS: dict[int, Callable[[Connection], None]] = {2: _v2_open_alarm_indexes}


def upgrade(conn: Connection, metadata: MetaData) -> int:
    """Bring the database to SCHEMA_VERSION; returns the version it had (0: new)."""
    tables = set(inspect(conn).get_table_names())
    if "meta" not in tables:
        metadata.create_all(conn)
        _set_version(conn, SCHEMA_VERSION)
        return 0
    row = conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).first()
    found = int(row[0]) if row is not None else 1
    if found > SCHEMA_VERSION:
        raise StoreTooNew(
            f"the shed database is at schema {found}, this controller knows up to "
            f"{SCHEMA_VERSION}: upgrade the controller (the file is left unchanged)"
        )
    for version in range(found + 1, SCHEMA_VERSION + 1):
        STEPS[version](conn)
    metadata.create_all(conn)  # tables that are new since `found` (existing ones are kept)
    _set_version(conn, SCHEMA_VERSION)
    return found


def _set_version(conn: Connection, version: int) -> None:
    conn.execute(
        text(
            "INSERT INTO meta (key, value) VALUES ('schema_version', :v) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        ),
        {"v": str(version)},
    )
