"""The routers of accounts and the staff board, under /api/v1 (docs/staff-board.md)."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import admin_users, live, staff_auth, staff_board, staff_money

router = APIRouter()
for module in (staff_auth, staff_board, staff_money, admin_users, live):
    router.include_router(module.router)
