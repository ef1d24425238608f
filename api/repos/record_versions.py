"""The highest version applied per (shed, kind, key): what makes the uplink idempotent."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import RecordVersion
from api.repos._dialect import insert_ignore


def lock_version(db: Session, shed_id: str, kind: str, key: str, now_ms: int) -> RecordVersion:
    """The version row of this key, locked until the transaction ends.

    A key never seen gets a row with version 0 first (rolled back with the
    transaction if the record is not applied). Two workers applying records
    of the same key therefore take turns: the second sees what the first
    wrote (PostgreSQL: FOR UPDATE; SQLite: the transaction holds the write lock).
    """
    insert_ignore(
        db,
        RecordVersion,
        {
            "shed_id": shed_id,
            "kind": kind,
            "key": key,
            "version": 0,
            "record_id": None,
            "applied_ms": now_ms,
        },
    )
    return db.scalars(
        select(RecordVersion)
        .where(
            RecordVersion.shed_id == shed_id,
            RecordVersion.kind == kind,
            RecordVersion.key == key,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
