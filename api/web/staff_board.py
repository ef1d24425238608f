"""The staff board pages: every shed, socket and bay live, open alarms, and
the socket page with its actions (docs/staff-board.md).

| page | what |
|---|---|
| `GET /board?shed=&state=` | the board; filters by shed and by socket state |
| `GET /board/events?shed=&state=` | server-sent events: changed sheds, the alarms |
| `GET /board/s/{shed}/{port}` | one socket: readings, stop, disable (reason), enable, its history |
| `POST /board/s/{shed}/{port}/{stop,disable,enable}` | the actions (audited) |
| `POST /board/alarms/{shed}/{alarm}/ack` | acknowledge an alarm with a note |

Without scripts the pages work (reload for news); with `staff.js` the
board listens to `/board/events` and swaps fragments in, no reloads.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Annotated, Final
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from api.access import Principal
from api.errors import ApiError
from api.repos import audit as audit_repo
from api.routes.staff_board import board_times
from api.schemas.board import AlarmView, BoardView
from api.services import board, staff_actions
from api.web import staff_i18n
from api.web.i18n import Lang, pick_lang
from api.web.routes import SHED_ID, LangQuery, _form
from api.web.staff_render import (
    ctx_of,
    render_fragment,
    render_staff,
    safe_next,
    staff_principal,
    to_login,
)

router = APIRouter(include_in_schema=False)
ShedQuery = Annotated[str | None, Query(alias="shed", max_length=32)]
StateQuery = Annotated[str | None, Query(alias="state", max_length=16)]
ALARM_ID: Final = re.compile(r"^[^/\s]{1,64}$")
REFRESH_S: Final = 15.0  # a quiet stream still re-renders (charging times, staleness)


def _filters(shed: str | None, state: str | None) -> tuple[str | None, str | None]:
    return (shed if shed and SHED_ID.match(shed) else None,
            state if state in staff_i18n.STATES else None)  # fmt: skip


def _staff_or_page(request: Request, lang: Lang) -> Principal | Response:
    principal = staff_principal(request)
    if principal is None:
        return to_login(request, lang)
    if not principal.has_any(*board.BOARD_ROLES):
        return render_staff(request, "staff/denied.html", lang, principal=principal, status=403)
    return principal


def _load(
    request: Request, principal: Principal, shed: str | None, state: str | None
) -> tuple[BoardView, list[AlarmView]]:
    ctx = ctx_of(request)
    with ctx.sessions() as db:
        try:
            view = board.board(db, principal, board_times(ctx), shed_id=shed, state=state)
            alarms = board.alarms(db, principal, shed_id=shed, open_only=True, limit=100)
        except ApiError:  # a shed not on this board: show nothing rather than fail
            view, alarms = BoardView(now_ms=ctx.now_ms(), sheds=[]), []
    return view, alarms


@router.get("/board")
def board_page(
    request: Request, lang: LangQuery = None, shed: ShedQuery = None, state: StateQuery = None,
    notice: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:  # fmt: skip
    lg = pick_lang(lang)
    principal = _staff_or_page(request, lg)
    if isinstance(principal, Response):
        return principal
    shed, state = _filters(shed, state)
    view, alarms = _load(request, principal, shed, state)
    with ctx_of(request).sessions() as db:
        choices = [(s.id, s.name) for s in board.visible_sheds(db, principal)]
    query = "&".join(f"{k}={quote(v)}" for k, v in (("shed", shed), ("state", state)) if v)
    return render_staff(
        request, "staff/board.html", lg, principal=principal, view=view, alarms=alarms,
        shed_choices=choices, shed=shed or "", state=state or "", notice=notice or "",
        events_url="/board/events?" + query + ("&lang=en" if lg == "en" else ""),
        here="/board" + (f"?{query}" if query else ""),
    )  # fmt: skip


@router.get("/board/events", response_class=EventSourceResponse)
async def board_events(
    request: Request, lang: LangQuery = None, shed: ShedQuery = None, state: StateQuery = None
) -> AsyncIterator[ServerSentEvent]:
    """A shed's fragment (event `shed`) whenever it changes, and the open alarms
    (event `alarms`) with it; everything again every 15 s while quiet."""
    lg = pick_lang(lang)
    principal = staff_principal(request)
    if principal is None or not principal.has_any(*board.BOARD_ROLES):
        yield ServerSentEvent(event="denied", data="log in", retry=60_000)
        return
    shed, state = _filters(shed, state)
    ctx = ctx_of(request)
    watch = request.app.state.staff.watch
    with ctx.sessions() as db:
        sheds = [s.id for s in board.visible_sheds(db, principal)]
    sub = watch.subscribe([s for s in sheds if shed is None or s == shed])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ctx.settings.board_stream_max_s
    try:
        yield ServerSentEvent(comment="board stream", retry=2000)
        while not watch.closing and loop.time() < deadline:
            try:
                await asyncio.wait_for(sub.wake.wait(), REFRESH_S)
                changed = sub.take()
            except TimeoutError:
                changed = set(sub.sheds)
            if watch.closing or await request.is_disconnected():
                break
            view, alarms = await run_in_threadpool(_load, request, principal, shed, state)
            for item in view.sheds:
                if item.shed_id in changed:
                    html = render_fragment(request, "staff/_shed.html", lg, principal=principal,
                                           s=item, now=view.now_ms)  # fmt: skip
                    yield ServerSentEvent(event="shed", id=item.shed_id, raw_data=html)
            html = render_fragment(request, "staff/_alarms.html", lg, principal=principal,
                                   alarms=alarms, here="/board")  # fmt: skip
            yield ServerSentEvent(event="alarms", raw_data=html)
    finally:
        watch.unsubscribe(sub)


# --------------------------------------------------------------------------- socket


@router.get("/board/s/{shed_id}/{port}")
def socket_page(
    request: Request, shed_id: str, port: int, lang: LangQuery = None,
    notice: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:  # fmt: skip
    lg = pick_lang(lang)
    principal = _staff_or_page(request, lg)
    if isinstance(principal, Response):
        return principal
    ctx = ctx_of(request)
    tile = None
    if SHED_ID.match(shed_id):
        view, _ = _load(request, principal, shed_id, None)
        found = [(s, t) for s in view.sheds for t in s.sockets if t.port == port]
        tile = found[0] if found else None
    if tile is None:
        return render_staff(request, "staff/denied.html", lg, principal=principal, status=404)
    with ctx.sessions() as db:
        history = [
            e
            for e in audit_repo.entries(db, compounds=None, shed_id=shed_id, limit=200)
            if e.target == f"port {port}"
        ][:20]
    return render_staff(
        request, "staff/socket.html", lg, principal=principal, s=tile[0], tile=tile[1],
        history=history, notice=notice or "", here=f"/board/s/{shed_id}/{port}",
    )  # fmt: skip


def _back(path: str, lang: Lang, notice: str) -> RedirectResponse:
    sep = "&" if "?" in path else "?"
    url = f"{path}{sep}notice={quote(notice)}" + ("&lang=en" if lang == "en" else "")
    return RedirectResponse(url, status_code=303)


@router.post("/board/s/{shed_id}/{port}/{action}")
async def socket_action(
    request: Request, shed_id: str, port: int, action: str, lang: LangQuery = None
) -> Response:
    form = await _form(request)
    lg = pick_lang(form.get("lang") or lang)
    principal = staff_principal(request)
    here = f"/board/s/{shed_id}/{port}"
    if principal is None:
        return to_login(request, lg)
    ctx = ctx_of(request)
    note, reason = form.get("note", "")[:512], form.get("reason", "")[:128]
    try:
        with ctx.sessions() as db, db.begin():
            now = ctx.now_ms()
            if action == "stop":
                staff_actions.stop_socket(db, principal, shed_id, port, note, now_ms=now)
            elif action == "disable":
                if not reason:
                    return _back(here, lg, "reason_needed")
                staff_actions.disable_socket(db, principal, shed_id, port, reason, now_ms=now)
            elif action == "enable":
                staff_actions.enable_socket(db, principal, shed_id, port, note, now_ms=now)
            else:
                return _back(here, lg, "unknown_action")
    except ApiError as err:
        return _back(here, lg, err.code)
    return _back(here, lg, "sent")


@router.post("/board/alarms/{shed_id}/{alarm_id}/ack")
async def ack_alarm(
    request: Request, shed_id: str, alarm_id: str, lang: LangQuery = None
) -> Response:
    form = await _form(request)
    lg = pick_lang(form.get("lang") or lang)
    principal = staff_principal(request)
    if principal is None:
        return to_login(request, lg)
    back = safe_next(form.get("next"), "/board")
    note = form.get("note", "")[:512]
    if not note:
        return _back(back, lg, "note_needed")
    if not ALARM_ID.match(alarm_id):
        return _back(back, lg, "unknown_alarm")
    ctx = ctx_of(request)
    try:
        with ctx.sessions() as db, db.begin():
            staff_actions.acknowledge_alarm(db, principal, shed_id, alarm_id, note,
                                            now_ms=ctx.now_ms())  # fmt: skip
    except ApiError as err:
        return _back(back, lg, err.code)
    return _back(back, lg, "sent")
