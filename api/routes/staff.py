"""The routers of accounts and the staff board, under /api/v1 (docs/staff-board.md)."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import staff_auth

router = APIRouter()
router.include_router(staff_auth.router)
