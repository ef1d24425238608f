"""Login (`/login`, `/logout`) and the staff board pages (`/board...`): see docs/staff-board.md.

app.include_router(router)
"""

from __future__ import annotations

from fastapi import APIRouter

from api.web import staff_board, staff_district, staff_login, staff_money, staff_pages

router = APIRouter(include_in_schema=False)
# staff_pages first: its fixed paths (/board/alarms, /board/audit, ...) before
# the board's own.
for module in (staff_login, staff_pages, staff_district, staff_money, staff_board):
    router.include_router(module.router)
