"""`ebshed user add`: make a staff, office or admin user from the command line
(the first admin of a new installation, before anyone can log in)."""

from __future__ import annotations

from dataclasses import dataclass

from api.db import make_engine, make_sessionmaker, upgrade
from api.errors import ApiError
from api.services.accounts import GrantSpec, create_user


@dataclass(frozen=True, slots=True)
class UserAddFailed(Exception):
    message: str
    code: str


def add_user(
    database_url: str,
    *,
    login: str,
    name: str,
    password: str,
    role: str,
    compounds: list[str],
    now_ms: int,
) -> int:
    """Migrate the database if need be, then add the user; their id.
    No `compounds`: the role holds in every compound."""
    upgrade(database_url)  # idempotent; the first admin may come before the API ever ran
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        sessions = make_sessionmaker(engine)
        grants = [GrantSpec(role, c) for c in compounds] or [GrantSpec(role, None)]
        with sessions.begin() as db:
            user = create_user(db, login=login, name=name, password=password, grants=grants,
                               now_ms=now_ms)  # fmt: skip
            return user.id
    except ApiError as err:
        raise UserAddFailed(err.message, err.code) from err
    finally:
        engine.dispose()
