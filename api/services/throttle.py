"""Login throttling, in the database so that every API worker counts the same.

Each failed password login counts against two keys: the login name tried
(`login:<name>`) and the client address (`ip:<addr>`). A key with
`max_failures` failures inside `window_ms` is locked for `lock_ms`: every
login on it answers `429 too_many_attempts` without checking the password,
so a password cannot be guessed faster than that. A good login clears its
name's count (not the address's: one office may share one address).

The `limits` family of libraries keep such counters in memory, Redis or
Memcached; the API has none of those, only its database, so this is the
few lines it takes on top of a table (decision 0008).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import LoginThrottle
from api.repos._dialect import insert_ignore


@dataclass(frozen=True, slots=True)
class Limit:
    max_failures: int
    window_ms: int
    lock_ms: int


def _lock_rows(db: Session, keys: Iterable[str], now_ms: int) -> list[LoginThrottle]:
    rows = []
    for key in keys:
        values = {"key": key, "window_start_ms": now_ms, "failures": 0, "locked_until_ms": None}
        insert_ignore(db, LoginThrottle, values)
        rows.append(
            db.scalars(
                select(LoginThrottle)
                .where(LoginThrottle.key == key)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).one()
        )
    return rows


def locked_until(db: Session, keys: Iterable[str], now_ms: int) -> int | None:
    """The latest time any of `keys` is locked until, if one is locked now."""
    rows = db.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(list(keys)))).all()
    until = [r.locked_until_ms for r in rows if r.locked_until_ms and r.locked_until_ms > now_ms]
    return max(until) if until else None


def record_failure(db: Session, limits: dict[str, Limit], now_ms: int) -> int | None:
    """Count a failed login against each key (with its limit); when this failure
    locks a key, the time it is locked until."""
    locked: int | None = None
    for row in _lock_rows(db, limits, now_ms):
        limit = limits[row.key]
        if now_ms - row.window_start_ms > limit.window_ms:
            row.window_start_ms, row.failures = now_ms, 0
        row.failures += 1
        if row.failures >= limit.max_failures:
            row.locked_until_ms = now_ms + limit.lock_ms
            row.window_start_ms, row.failures = now_ms, 0
            locked = max(locked or 0, row.locked_until_ms)
    return locked


def clear(db: Session, key: str) -> None:
    row = db.get(LoginThrottle, key)
    if row is not None:
        db.delete(row)
