"""Registering compounds and sheds, and issuing shed tokens."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import Conflict, NotFound
from api.models import Bay, Compound, Shed, Socket
from api.repos import compounds, sheds
from api.schemas.sheds import BayIn
from api.security import hash_token, new_token


@dataclass(frozen=True, slots=True)
class RegisteredShed:
    shed: Shed
    token: str  # the only time the token exists outside the shed


def register_compound(db: Session, compound_id: str, name: str, *, now_ms: int) -> Compound:
    if compounds.get_compound(db, compound_id) is not None:
        raise Conflict(f"compound {compound_id} exists", code="compound_exists")
    return compounds.add_compound(db, compound_id, name, now_ms)


def register_shed(
    db: Session,
    shed_id: str,
    name: str,
    compound_id: str,
    *,
    now_ms: int,
    ports: list[int] | None = None,
    bays: list[BayIn] | None = None,
) -> RegisteredShed:
    """Create a shed and its first token. Listed sockets start `offline` until it reports."""
    if compounds.get_compound(db, compound_id) is None:
        raise NotFound(f"no compound {compound_id}", code="unknown_compound")
    if sheds.get_shed(db, shed_id) is not None:
        raise Conflict(f"shed {shed_id} exists", code="shed_exists")
    token = new_token()
    try:
        shed = sheds.add_shed(db, shed_id, name, compound_id, hash_token(token), now_ms)
    except IntegrityError as err:  # registered at the same moment by another request
        raise Conflict(f"shed {shed_id} exists", code="shed_exists") from err
    for port in sorted(set(ports or ())):
        db.add(
            Socket(
                shed_id=shed_id,
                port=port,
                state="offline",
                since_ms=now_ms,
                updated_ms=now_ms,
            )
        )
    for bay in {b.number: b for b in bays or ()}.values():
        db.add(
            Bay(
                shed_id=shed_id,
                number=bay.number,
                port=bay.port,
                occupied=False,
                since_ms=now_ms,
                updated_ms=now_ms,
            )
        )
    db.flush()
    return RegisteredShed(shed, token)


def rotate_shed_token(db: Session, shed_id: str) -> str:
    """A new token for the shed; the old one stops working at once."""
    shed = sheds.get_shed(db, shed_id)
    if shed is None:
        raise NotFound(f"no shed {shed_id}", code="unknown_shed")
    token = new_token()
    shed.token_hash = hash_token(token)
    db.flush()
    return token
