"""The highest version applied per (shed, kind, key): what makes the uplink idempotent."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from api.models import RecordVersion
from api.repos._dialect import Upsert, insert_ignore, upsert

_TABLE: Table = RecordVersion.__table__  # type: ignore[assignment]
_KEY = ("shed_id", "kind", "key")
# `SET version = version`: changes nothing, but locks the row and returns it.
_LOCK = Upsert(_TABLE, _KEY, {"version": "record_versions.version"}, ("kind", "key", "version"))
_SET = Upsert(
    _TABLE,
    _KEY,
    {c: f"excluded.{c}" for c in ("version", "record_id", "applied_ms")},
    ("key",),
)
_NEWER = Upsert(
    _TABLE,
    _KEY,
    {c: f"excluded.{c}" for c in ("version", "record_id", "applied_ms")},
    ("kind", "key"),
    where="record_versions.version < excluded.version",
)


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


def lock_versions(
    db: Session, shed_id: str, keys: Sequence[tuple[str, str]], now_ms: int
) -> dict[tuple[str, str], int]:
    """The stored version of each (kind, key), every row locked until the
    transaction ends (keys never seen get a row at version 0 first), in one
    statement. Pass `keys` sorted: two batches then lock in the same order."""
    rows = [
        {"shed_id": shed_id, "kind": kind, "key": key, "version": 0, "record_id": None,
         "applied_ms": now_ms}
        for kind, key in keys
    ]  # fmt: skip
    got = upsert(db, _LOCK, rows)
    versions = {(kind, key): version for kind, key, version in got}
    missing = set(keys) - versions.keys()
    if missing:
        raise LookupError(f"version rows not returned: {sorted(missing)[:3]}")
    return versions


def set_versions(
    db: Session, shed_id: str, applied: Sequence[tuple[str, str, int, str]], now_ms: int
) -> None:
    """Store (kind, key, version, record id) of the records applied (rows locked
    by `lock_versions` in this transaction), in one statement."""
    rows = [
        {"shed_id": shed_id, "kind": kind, "key": key, "version": version,
         "record_id": record_id, "applied_ms": now_ms}
        for kind, key, version, record_id in applied
    ]  # fmt: skip
    upsert(db, _SET, rows)


def store_newer(
    db: Session, shed_id: str, records: Sequence[tuple[str, str, int, str]], now_ms: int
) -> set[tuple[str, str]]:
    """Store (kind, key, version, record id) where the version is newer than the
    stored one (or the key new), in one statement; the (kind, key)s stored. The
    rows are locked until the transaction ends. Each key once, sorted: two
    batches then lock in the same order."""
    rows = [
        {"shed_id": shed_id, "kind": kind, "key": key, "version": version,
         "record_id": record_id, "applied_ms": now_ms}
        for kind, key, version, record_id in records
    ]  # fmt: skip
    return {(kind, key) for kind, key in upsert(db, _NEWER, rows)}
