"""Login throttling and rate limits, in the database so that every API worker
counts the same (rows of `login_throttle`, one per key).

Failed password logins (`record_pair_failure`): each failure counts against the
pair (login name, client address) `pair:<name>|<addr>`, the address
`ip:<addr>` and the name `login:<name>`. A pair past its free failures waits
a backoff (doubling, capped) before its next try is checked: `429
too_many_attempts` without looking at the password. An address or a name
that failed too often overall makes every pair of theirs back off from the
first failure. Nothing locks a whole address or a whole name: the right
password from a pair that has not failed logs in, so one attacker behind an
office's address slows only the names they guess. A good login clears its pair.

Rate limits (`hit`): a fixed window counter per key (`rate:<what>:<who>`);
a request over any of its limits is refused `429 rate_limited` and not counted.

The `limits` family of libraries keep such counters in memory, Redis or
Memcached; the API has none of those, only its database, so this is the
few lines it takes on top of a table (decision 0008).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.models import LoginThrottle
from api.repos._dialect import insert_ignore

# Longer than every window (a day of SMS codes per phone is counted elsewhere).
FORGET_AFTER_MS: Final = 86_400_000


@dataclass(frozen=True, slots=True)
class Backoff:
    """Failures of one (name, address) pair in `window_ms`: the `free`-th and each
    after it waits `first_ms`, doubling, at most `most_ms`. `per_address`
    and `per_name` failures in the window make `free` zero for their pairs."""

    free: int
    per_address: int
    per_name: int
    window_ms: int
    first_ms: int
    most_ms: int


@dataclass(frozen=True, slots=True)
class Rate:
    count: int
    window_ms: int


class RateLimited(ApiError):
    status, code = 429, "rate_limited"

    def __init__(self, scope: str, retry_after_ms: int) -> None:
        retry_s = max(1, -(-retry_after_ms // 1000))
        super().__init__(f"too many requests ({scope}); try again in {retry_s} s")
        self.headers = {"Retry-After": str(retry_s)}
        self.extra = {"scope": scope, "retry_after_s": retry_s}


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


def pair_keys(name: str, address: str) -> tuple[str, str, str]:
    """The (pair, address, name) keys of one password login."""
    name, address = name[:48], address[:64]
    return f"pair:{name}|{address}", f"ip:{address}", f"login:{name}"


def record_pair_failure(
    db: Session, name: str, address: str, backoff: Backoff, now_ms: int
) -> int | None:
    """Count a failed login; the time its pair must wait until, if it must."""
    keys = pair_keys(name, address)
    pair, by_address, by_name = _lock_rows(db, keys, now_ms)
    for row in (pair, by_address, by_name):
        if now_ms - row.window_start_ms > backoff.window_ms:
            row.window_start_ms, row.failures = now_ms, 0
        row.failures += 1
    hot = by_address.failures > backoff.per_address or by_name.failures > backoff.per_name
    excess = pair.failures if hot else pair.failures - backoff.free + 1
    if excess <= 0:
        return None
    wait = min(backoff.first_ms * 2 ** min(excess - 1, 30), backoff.most_ms)
    pair.locked_until_ms = now_ms + wait
    return pair.locked_until_ms


def rate_key(what: str, who: str, value: str | None = None) -> str:
    """`rate:orders:address=1.2.3.4`; `who` "api" (no value) counts every client."""
    return f"rate:{what}:{who}" if value is None else f"rate:{what}:{who}={value[:64]}"


def hit(db: Session, limits: Mapping[str, Rate], now_ms: int) -> None:
    """Count one request against each key; `RateLimited` (nothing counted, as the
    caller's transaction rolls back) if any key is at its limit."""
    for row in _lock_rows(db, sorted(limits), now_ms):
        limit = limits[row.key]
        if now_ms - row.window_start_ms >= limit.window_ms:
            row.window_start_ms, row.failures = now_ms, 0
        if row.failures >= limit.count:
            _, what, who = row.key.split(":", 2)
            who = who.partition("=")[0]
            scope = f"{what}, all clients" if who == "api" else f"{what} per {who}"
            raise RateLimited(scope, row.window_start_ms + limit.window_ms - now_ms)
        row.failures += 1


def forget_old(db: Session, now_ms: int, older_than_ms: int = FORGET_AFTER_MS) -> int:
    """Delete counters whose window began more than `older_than_ms` ago and that
    lock nothing now (each address and phone leaves a row); how many."""
    cutoff = now_ms - older_than_ms
    result = db.execute(
        delete(LoginThrottle).where(
            LoginThrottle.window_start_ms < cutoff,
            or_(LoginThrottle.locked_until_ms.is_(None), LoginThrottle.locked_until_ms < now_ms),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def clear(db: Session, key: str) -> None:
    row = db.get(LoginThrottle, key)
    if row is not None:
        db.delete(row)
