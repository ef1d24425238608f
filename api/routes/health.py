"""Liveness for load balancers and deploy scripts."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from api.deps import DbDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(db: DbDep) -> dict[str, bool]:
    """200 when the database answers."""
    db.execute(text("SELECT 1"))
    return {"ok": True}
