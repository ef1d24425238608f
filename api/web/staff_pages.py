"""The staff board's other pages: alarm history, audit log, tariff, cards and
plans, refunds (docs/staff-board.md). Each action is audited by its service."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from api.access import Principal
from api.errors import ApiError
from api.repos import audit as audit_repo
from api.repos import compounds as compound_repo
from api.repos import orders as order_repo
from api.repos import sheds as shed_repo
from api.schemas.staff_money import CardIn, PlanIn
from api.services import board, staff_cards, staff_refunds, staff_tariffs
from api.services.orders_pricing import price_of
from api.web import views
from api.web.i18n import Lang, pick_lang
from api.web.routes import LangQuery, _form
from api.web.staff_board import _back, _staff_or_page
from api.web.staff_render import ctx_of, render_staff, staff_principal, to_login
from controller.core.tariffs import TariffError, tariff_from_dict

router = APIRouter(include_in_schema=False)
NoticeQuery = Annotated[str | None, Query(alias="notice", max_length=32)]
CompoundQuery = Annotated[str | None, Query(alias="compound", max_length=32)]
DAY_MS = 86_400_000


def _compounds(request: Request, principal: Principal) -> list[tuple[str, str]]:
    wanted = principal.compounds(*board.BOARD_ROLES)
    with ctx_of(request).sessions() as db:
        return [(c.id, c.name) for c in compound_repo.list_compounds(db)
                if wanted is None or c.id in wanted]  # fmt: skip


def _pick(choices: list[tuple[str, str]], value: str | None) -> str | None:
    ids = [c for c, _ in choices]
    return value if value in ids else (ids[0] if ids else None)


def _fen(text: str) -> int | None:
    """Yuan as typed ("12.5") to fen; None when it is not an amount."""
    try:
        value = Decimal(text.strip() or "0") * 100
    except InvalidOperation:
        return None
    return int(value) if value == value.to_integral_value() and value >= 0 else None


def _compound_page(
    request: Request, lang: str | None, compound: str | None
) -> tuple[Lang, Principal, list[tuple[str, str]], str | None] | Response:
    """A page about one of the user's compounds: the language, the staff user (or
    the login page), the compounds to choose from and the one chosen."""
    lg = pick_lang(lang)
    principal = _staff_or_page(request, lg)
    if isinstance(principal, Response):
        return principal
    choices = _compounds(request, principal)
    return lg, principal, choices, _pick(choices, compound)


async def _staff_post(
    request: Request, lang: str | None
) -> tuple[dict[str, str], Lang, Principal] | Response:
    """A form posted by a staff user: the form, its language and the user, or the login."""
    form = await _form(request)
    lg = pick_lang(form.get("lang") or lang)
    principal = staff_principal(request)
    if principal is None:
        return to_login(request, lg)
    return form, lg, principal


@router.get("/board/alarms")
def alarm_history(request: Request, lang: LangQuery = None) -> Response:
    lg = pick_lang(lang)
    principal = _staff_or_page(request, lg)
    if isinstance(principal, Response):
        return principal
    with ctx_of(request).sessions() as db:
        alarms = board.alarms(db, principal, open_only=False, limit=500)
    return render_staff(request, "staff/alarms.html", lg, principal=principal, alarms=alarms,
                        notice="", here="/board/alarms")  # fmt: skip


@router.get("/board/audit")
def audit_page(request: Request, lang: LangQuery = None) -> Response:
    lg = pick_lang(lang)
    principal = _staff_or_page(request, lg)
    if isinstance(principal, Response):
        return principal
    with ctx_of(request).sessions() as db:
        rows = audit_repo.entries(db, compounds=principal.compounds(*board.BOARD_ROLES), limit=300)
    return render_staff(request, "staff/audit.html", lg, principal=principal, rows=rows)


# --------------------------------------------------------------------------- tariff


def _price_lines(body: dict[str, Any] | None, lang: Lang) -> list[str]:
    if not body:
        return []
    try:
        return list(views.price_view(price_of(tariff_from_dict(body)), lang).lines)
    except TariffError:
        return []


@router.get("/board/tariff")
def tariff_page(
    request: Request, lang: LangQuery = None, compound: CompoundQuery = None,
    notice: NoticeQuery = None,
) -> Response:  # fmt: skip
    page = _compound_page(request, lang, compound)
    if isinstance(page, Response):
        return page
    lg, principal, choices, chosen = page
    body: dict[str, Any] | None = None
    if chosen is not None:
        with ctx_of(request).sessions() as db:
            row = staff_tariffs.current_tariff(db, principal, chosen)
            body = dict(row.body) if row is not None else None
    return render_staff(
        request, "staff/tariff.html", lg, principal=principal, compounds=choices,
        compound=chosen or "", tariff=body, lines=_price_lines(body, lg), notice=notice or "",
        text=json.dumps(body or {}, ensure_ascii=False, indent=2),
    )  # fmt: skip


@router.post("/board/tariff")
async def tariff_publish(request: Request, lang: LangQuery = None) -> Response:
    posted = await _staff_post(request, lang)
    if isinstance(posted, Response):
        return posted
    form, lg, principal = posted
    compound = form.get("compound", "")
    back = f"/board/tariff?compound={compound}"
    try:
        body = json.loads(form.get("tariff", ""))
    except ValueError:
        return _back(back, lg, "bad_json")
    if not isinstance(body, dict):
        return _back(back, lg, "bad_json")
    ctx = ctx_of(request)
    try:
        with ctx.sessions() as db, db.begin():
            staff_tariffs.publish_tariff(db, principal, compound, body, form.get("note", ""),
                                         now_ms=ctx.now_ms())  # fmt: skip
    except ApiError as err:
        return _back(back, lg, err.code)
    return _back(back, lg, "sent")


# --------------------------------------------------------------------------- cards


@router.get("/board/cards")
def cards_page(
    request: Request, lang: LangQuery = None, compound: CompoundQuery = None,
    notice: NoticeQuery = None,
) -> Response:  # fmt: skip
    page = _compound_page(request, lang, compound)
    if isinstance(page, Response):
        return page
    lg, principal, choices, chosen = page
    cards, sheds = [], []
    if chosen is not None:
        with ctx_of(request).sessions() as db:
            cards = staff_cards.list_cards(db, principal, chosen)
            sheds = [(s.id, s.name) for s in shed_repo.list_sheds(db, chosen)]
    return render_staff(request, "staff/cards.html", lg, principal=principal, compounds=choices,
                        compound=chosen or "", cards=cards, sheds=sheds,
                        notice=notice or "")  # fmt: skip


@router.post("/board/cards")
async def card_save(request: Request, lang: LangQuery = None) -> Response:
    posted = await _staff_post(request, lang)
    if isinstance(posted, Response):
        return posted
    form, lg, principal = posted
    compound = form.get("compound", "")
    back = f"/board/cards?compound={compound}"
    top_up = _fen(form.get("top_up", ""))
    if top_up is None:
        return _back(back, lg, "bad_amount")
    blocked = {"block": True, "unblock": False}.get(form.get("blocked", ""))
    ctx = ctx_of(request)
    try:
        body = CardIn(uid=form.get("uid", ""), top_up_fen=top_up, blocked=blocked,
                      shed_id=form.get("shed") or None, note=form.get("note", ""))  # fmt: skip
        with ctx.sessions() as db, db.begin():
            if form.get("plan_days"):
                now, days = ctx.now_ms(), int(form["plan_days"])
                price = _fen(form.get("plan_price", "")) or 0
                plan = PlanIn(starts_ms=now, ends_ms=now + days * DAY_MS, price_fen=price,
                              note=body.note)  # fmt: skip
                staff_cards.add_plan(db, principal, compound, body.uid, plan, now_ms=now)
            else:
                staff_cards.save_card(db, principal, compound, body, now_ms=ctx.now_ms())
    except (ValidationError, ValueError):
        return _back(back, lg, "bad_amount")
    except ApiError as err:
        return _back(back, lg, err.code)
    return _back(back, lg, "sent")


# --------------------------------------------------------------------------- refunds


@router.get("/board/refunds")
def refunds_page(request: Request, lang: LangQuery = None, notice: NoticeQuery = None) -> Response:
    lg = pick_lang(lang)
    principal = _staff_or_page(request, lg)
    if isinstance(principal, Response):
        return principal
    with ctx_of(request).sessions() as db:
        rows = staff_refunds.refunds_needing_staff(db, principal)
    return render_staff(request, "staff/refunds.html", lg, principal=principal, rows=rows,
                        notice=notice or "")  # fmt: skip


@router.post("/board/refunds")
async def refund_submit(request: Request, lang: LangQuery = None) -> Response:
    posted = await _staff_post(request, lang)
    if isinstance(posted, Response):
        return posted
    form, lg, principal = posted
    amount = _fen(form.get("amount", "")) if form.get("amount") else None
    note = form.get("note", "")[:512]
    if not note:
        return _back("/board/refunds", lg, "note_needed")
    if amount == 0 or (form.get("amount") and amount is None):
        return _back("/board/refunds", lg, "bad_amount")
    ctx = ctx_of(request)
    try:
        with ctx.sessions() as db, db.begin():
            order_no = form.get("order", "")
            if order_repo.get_order(db, order_no) is None:
                return _back("/board/refunds", lg, "unknown_order")
            staff_refunds.manual_refund(db, principal, order_no, amount, note,
                                        now_ms=ctx.now_ms())  # fmt: skip
    except ApiError as err:
        return _back("/board/refunds", lg, err.code)
    return _back("/board/refunds", lg, "done")
