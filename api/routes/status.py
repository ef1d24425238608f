"""What a shed looks like right now: sockets, bays, alarms (public, no login)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CtxDep, DbDep, ShedIdPath
from api.schemas.sheds import ShedStatus
from api.services.status import shed_status

router = APIRouter(tags=["public"])


@router.get("/sheds/{shed_id}/status")
def get_status(shed_id: ShedIdPath, db: DbDep, ctx: CtxDep) -> ShedStatus:
    """Free sockets and bays, each socket's state, the number of active alarms."""
    return shed_status(
        db, shed_id, now_ms=ctx.now_ms(), offline_after_ms=ctx.settings.shed_offline_after_s * 1000
    )
