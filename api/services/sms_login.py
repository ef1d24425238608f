"""Residents' login sessions: a random token in an httpOnly cookie (or a bearer
header); only its sha256 is stored, like shed tokens."""

from __future__ import annotations

from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import User, UserSession
from api.security import hash_token, new_token

COOKIE_NAME: Final = "ebshed_session"
DAY_MS: Final = 86_400_000


def user_for_phone(db: Session, phone: str, *, now_ms: int) -> User:
    """The resident with this phone; made at the first login."""
    user = db.scalar(select(User).where(User.phone == phone))
    if user is None:
        user = User(phone=phone, name=f"{phone[:3]}****{phone[-4:]}", created_ms=now_ms)
        db.add(user)
        db.flush()
    return user


def open_session(db: Session, user: User, *, now_ms: int, days: int) -> tuple[str, int]:
    """A new login for `user`: the token (shown once) and when it expires."""
    token = new_token()
    expires_ms = now_ms + days * DAY_MS
    db.add(
        UserSession(
            token_hash=hash_token(token), user_id=user.id, created_ms=now_ms, expires_ms=expires_ms
        )
    )
    return token, expires_ms


def user_for_token(db: Session, token: str, *, now_ms: int) -> User | None:
    session = db.get(UserSession, hash_token(token))
    if session is None or session.expires_ms <= now_ms:
        return None
    user = db.get(User, session.user_id)
    if user is None or user.disabled:
        return None
    return user


def close_session(db: Session, token: str) -> None:
    session = db.get(UserSession, hash_token(token))
    if session is not None:
        db.delete(session)
