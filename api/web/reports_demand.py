"""Unserved demand from the resident pages: a socket page opened from its QR
sticker (`?src=qr`, controller/qrsheet.py) while the shed had no free socket.

The browser gets a random visitor cookie the first time, so that the same
person scanning again (or another socket of the same full shed) within 30
minutes counts once (api/reports/demand.py). Only a salted hash of it is stored.
"""

from __future__ import annotations

import logging
import secrets
from typing import Final, cast

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from api.context import AppContext
from api.reports.demand import record_scan, visitor_key

log = logging.getLogger(__name__)

VISITOR_COOKIE: Final = "ebshed_visitor"
VISITOR_MAX_AGE_S: Final = 365 * 24 * 3600
QR_SOURCE: Final = "qr"


def from_sticker(request: Request) -> bool:
    return request.query_params.get("src") == QR_SOURCE


async def note_scan(request: Request, response: Response, shed_id: str, port: int) -> None:
    """Record the scan if it found no free socket; never fails the page."""
    token = request.cookies.get(VISITOR_COOKIE, "")
    if not 16 <= len(token) <= 64:
        token = secrets.token_urlsafe(24)
        response.set_cookie(
            VISITOR_COOKIE, token, max_age=VISITOR_MAX_AGE_S, httponly=True, samesite="lax"
        )
    ctx = cast(AppContext, request.app.state.ctx)
    visitor = visitor_key("web", token)

    def write() -> bool:
        with ctx.sessions() as db, db.begin():
            return record_scan(db, shed_id, port, visitor, ctx.now_ms())

    try:
        if await run_in_threadpool(write):
            log.info("unserved demand: scan of %s/%s found no free socket", shed_id, port)
    except Exception:  # the resident's page matters more than the statistic
        log.exception("could not record a scan of %s/%s", shed_id, port)
