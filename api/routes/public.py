"""What a resident sees at the QR code, before paying (public, no login)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import CtxDep, DbDep, ShedIdPath
from api.schemas.public import PublicShed, PublicSocket
from api.services.orders_pricing import public_shed, public_socket

router = APIRouter(prefix="/public", tags=["residents"])


@router.get("/sheds/{shed_id}")
def get_public_shed(shed_id: ShedIdPath, db: DbDep, ctx: CtxDep) -> PublicShed:
    """Free sockets and bays now, whether the shed is online, and the posted price."""
    return public_shed(db, shed_id, now_ms=ctx.now_ms(), settings=ctx.settings)


@router.get("/sheds/{shed_id}/sockets/{port}")
def get_public_socket(
    shed_id: ShedIdPath,
    port: Annotated[int, Path(ge=1, le=9999)],
    db: DbDep,
    ctx: CtxDep,
) -> PublicSocket:
    """One socket (the QR sticker's target): its state, whether it can be paid for
    now and why not, the price, the deposit for "until full" and the amounts offered."""
    return public_socket(db, shed_id, port, now_ms=ctx.now_ms(), settings=ctx.settings)
