"""POST /api/v1/sheds/{shed_id}/live: a shed's live readings for the staff board."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CtxDep, DbDep, ShedDep
from api.schemas.live import LiveAnswer, LiveIn
from api.services.live import store_snapshot

router = APIRouter(tags=["shed"])


@router.post("/sheds/{shed_id}/live")
def live_snapshot(body: LiveIn, shed: ShedDep, ctx: CtxDep, db: DbDep) -> LiveAnswer:
    """The newest readings of every socket and bay (every few seconds, not from the
    outbox). Kept when taken later than the stored one; an older one is ignored."""
    with db.begin():
        return LiveAnswer(stored=store_snapshot(db, shed.id, body, now_ms=ctx.now_ms()))
