"""Password hashes for staff, office and admin users: argon2id (argon2-cffi).

Only the encoded hash (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`) is kept;
it carries its own parameters, so hashes made with older parameters still
verify and are upgraded at the next login (`needs_rehash`).
"""

from __future__ import annotations

from functools import cache
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LEN: Final = 8
MAX_PASSWORD_LEN: Final = 128


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id, RFC 9106 "low memory" profile (64 MiB, t=3, p=4)


@cache
def _dummy_hash() -> str:
    return _hasher().hash("an unknown user takes as long as a wrong password")


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches. A user without a hash costs the same time
    as one with a wrong password, so timing does not tell which logins exist."""
    try:
        return _hasher().verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher().check_needs_rehash(password_hash)
