"""Staff, office and admin accounts: users with a login name and a password,
and their role grants (a role in one compound, or in every compound).

`create_user` is what `ebshed user add`, the admin API and the demo call.
`password_login` checks a login under the throttle (api/services/throttle.py)
and opens a session (the same `user_sessions` cookie logins as residents'
SMS login, api/services/sms_login.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import Conflict, Invalid, NotFound
from api.models import ROLES, RoleGrant, User, UserSession
from api.repos import compounds
from api.security import hash_token, new_token
from api.services import passwords, throttle

LOGIN_PATTERN: Final = r"^[a-z0-9][a-z0-9._-]{1,63}$"
_LOGIN = re.compile(LOGIN_PATTERN)
HOUR_MS: Final = 3_600_000


@dataclass(frozen=True, slots=True)
class GrantSpec:
    role: str
    compound_id: str | None  # None: every compound


def check_login(login: str) -> str:
    login = login.strip().lower()
    if not _LOGIN.match(login):
        raise Invalid(
            "a login is 2..64 of a-z 0-9 . _ - and starts with a letter or digit",
            code="bad_login",
        )
    return login


def check_password(password: str) -> None:
    if not passwords.MIN_PASSWORD_LEN <= len(password) <= passwords.MAX_PASSWORD_LEN:
        raise Invalid(
            f"a password has {passwords.MIN_PASSWORD_LEN}..{passwords.MAX_PASSWORD_LEN} characters",
            code="bad_password",
        )


def _check_grant(db: Session, grant: GrantSpec) -> None:
    if grant.role not in ROLES:
        raise Invalid(f"unknown role {grant.role!r}; one of {', '.join(ROLES)}", code="bad_role")
    if grant.compound_id is None:
        return
    if compounds.get_compound(db, grant.compound_id) is None:
        raise NotFound(f"no compound {grant.compound_id}", code="unknown_compound")


def create_user(
    db: Session,
    *,
    login: str,
    name: str,
    password: str,
    grants: Iterable[GrantSpec],
    now_ms: int,
) -> User:
    """A new user who logs in with `login` and `password`, with these grants."""
    login = check_login(login)
    check_password(password)
    name = name.strip()[:64] or login
    grant_list = list(dict.fromkeys(grants))
    for grant in grant_list:
        _check_grant(db, grant)
    if db.scalar(select(User.id).where(User.login == login)) is not None:
        raise Conflict(f"a user {login} exists", code="login_exists")
    user = User(
        login=login,
        name=name,
        password_hash=passwords.hash_password(password),
        disabled=False,
        created_ms=now_ms,
    )
    db.add(user)
    try:
        db.flush()
    except IntegrityError as err:  # a concurrent create of the same login
        raise Conflict(f"a user {login} exists", code="login_exists") from err
    for grant in grant_list:
        db.add(RoleGrant(user_id=user.id, compound_id=grant.compound_id, role=grant.role,
                         created_ms=now_ms))  # fmt: skip
    db.flush()
    return user


def get_user(db: Session, user_id: int) -> User:
    user = db.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}", code="unknown_user")
    return user


def user_by_login(db: Session, login: str) -> User | None:
    return db.scalar(select(User).where(User.login == login.strip().lower()))


def grants_of(db: Session, user_id: int) -> Sequence[RoleGrant]:
    return db.scalars(
        select(RoleGrant).where(RoleGrant.user_id == user_id).order_by(RoleGrant.id)
    ).all()


def list_users(db: Session, *, staff_only: bool = True, limit: int = 500) -> Sequence[User]:
    query = select(User).order_by(User.id).limit(limit)
    if staff_only:
        query = query.where(User.login.is_not(None))
    return db.scalars(query).all()


def add_grant(db: Session, user: User, grant: GrantSpec, *, now_ms: int) -> RoleGrant:
    _check_grant(db, grant)
    for existing in grants_of(db, user.id):
        if existing.role == grant.role and existing.compound_id == grant.compound_id:
            return existing
    row = RoleGrant(user_id=user.id, compound_id=grant.compound_id, role=grant.role,
                    created_ms=now_ms)  # fmt: skip
    db.add(row)
    db.flush()
    return row


def remove_grant(db: Session, user: User, grant: GrantSpec) -> bool:
    for existing in grants_of(db, user.id):
        if existing.role == grant.role and existing.compound_id == grant.compound_id:
            db.delete(existing)
            return True
    return False


def set_password(db: Session, user: User, password: str) -> None:
    """A new password; every open login of the user ends."""
    check_password(password)
    user.password_hash = passwords.hash_password(password)
    end_sessions(db, user.id)


def set_disabled(db: Session, user: User, disabled: bool) -> None:
    user.disabled = disabled
    if disabled:
        end_sessions(db, user.id)


def end_sessions(db: Session, user_id: int) -> None:
    for row in db.scalars(select(UserSession).where(UserSession.user_id == user_id)).all():
        db.delete(row)


def session_user(db: Session, token: str, *, now_ms: int) -> User | None:
    """The (enabled) user of a login token that has not expired."""
    session = db.get(UserSession, hash_token(token))
    if session is None or session.expires_ms <= now_ms:
        return None
    user = db.get(User, session.user_id)
    return None if user is None or user.disabled else user


# ---------------------------------------------------------------- password login


@dataclass(frozen=True, slots=True)
class LoginLimits:
    backoff: throttle.Backoff
    # Attempts, whatever their outcome: {rate key: limit} (per address, all clients).
    rates: Mapping[str, throttle.Rate]
    session_hours: int


@dataclass(frozen=True, slots=True)
class LoggedIn:
    user: User
    token: str
    expires_ms: int


@dataclass(frozen=True, slots=True)
class Refused:
    why: Literal["bad_credentials", "too_many_attempts"]
    retry_after_ms: int = 0


def password_login(
    db: Session,
    login: str,
    password: str,
    *,
    address: str,
    now_ms: int,
    limits: LoginLimits,
) -> LoggedIn | Refused:
    """Check a password login; the caller commits whatever the answer (a failure
    is counted even though the answer is an error)."""
    login = login.strip().lower()[:64]
    throttle.hit(db, limits.rates, now_ms)  # RateLimited: 429 rate_limited
    pair_key = throttle.pair_keys(login, address)[0]
    until = throttle.locked_until(db, (pair_key,), now_ms)
    if until is not None:
        return Refused("too_many_attempts", until - now_ms)
    user = user_by_login(db, login) if _LOGIN.match(login) else None
    ok = passwords.verify_password(user.password_hash if user else None, password)
    if user is None or user.disabled or not ok:
        locked = throttle.record_pair_failure(db, login, address, limits.backoff, now_ms)
        if locked is not None:
            return Refused("too_many_attempts", locked - now_ms)
        return Refused("bad_credentials")
    throttle.clear(db, pair_key)
    assert user.password_hash is not None
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    token, expires_ms = new_token(), now_ms + limits.session_hours * HOUR_MS
    db.add(UserSession(token_hash=hash_token(token), user_id=user.id, created_ms=now_ms,
                       expires_ms=expires_ms))  # fmt: skip
    return LoggedIn(user, token, expires_ms)
