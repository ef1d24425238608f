"""The office's side of the money page and the consultations, on the staff
site: `GET /board/money/{compound_id}` (docs/money-page.md).

| page | who | what |
|---|---|---|
| `GET /board/money/{compound_id}` | office, staff, admin | the forms, the consultations |
| `POST .../{settings,expense,meter,households,consultation}` | office, admin | changes |
| `POST .../apply/{id}` | staff, admin | apply a passed tariff proposal (audited) |

The forms call the same services as the JSON API (api/routes/money.py,
api/routes/consultations.py); a refused change shows why and changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from api.access import Principal
from api.errors import ApiError
from api.models import Compound, Consultation, Household, Shed
from api.repos import orders as order_repo
from api.routes.staff_board import board_times
from api.services import consultations, money_page
from api.services.consultations import ConsultationError
from api.services.money_page import MoneyError
from api.web.i18n import Lang, pick_lang
from api.web.routes import SHED_ID, LangQuery, _form
from api.web.staff_render import ctx_of, render_staff, staff_principal, to_login

router = APIRouter(include_in_schema=False)
MAX_CSV_FORM: Final = 60_000
DAY_MS: Final = 86_400_000
TEXT: Final[dict[str, tuple[str, str]]] = {
    "title": ("账目公开与意见征询", "Money page and consultations"),
    "public": ("公开页面", "The public page"),
    "settings": ("电价与结余用途", "Grid price and what the margin is for"),
    "grid": ("电网电价（分/度）", "Grid price (fen per kWh)"),
    "margin_for": ("结余用途", "What the margin is for"),
    "save": ("保存", "Save"),
    "expense": ("添加支出", "Add an expense line"),
    "month": ("月份（如 2026-11）", "Month (e.g. 2026-11)"),
    "amount": ("金额（分）", "Amount (fen)"),
    "note": ("说明", "Note"),
    "meter": ("车棚总电表读数（本月用电，瓦时）", "Shed main meter (the month's energy, Wh)"),
    "shed": ("车棚", "Shed"),
    "energy": ("电量（瓦时）", "Energy (Wh)"),
    "households": ("住户名单（CSV：building,unit,flat,phones）",
                   "Households (CSV: building,unit,flat,phones)"),
    "import": ("导入", "Import"),
    "registered": ("已登记 {n} 户", "{n} households registered"),
    "consult": ("发起意见征询", "Open a consultation"),
    "kind": ("类型", "Kind"),
    "kind_tariff": ("新电价（每小时，分）", "New tariff (fen per hour)"),
    "kind_sockets": ("增加插座", "More sockets"),
    "kind_text": ("其他事项", "Free text"),
    "c_title": ("标题", "Title"),
    "c_text": ("内容", "Text"),
    "fen_per_hour": ("新价格：每小时（分）", "New price: fen per hour"),
    "sockets": ("增加插座数", "Sockets to add"),
    "days": ("征询天数", "Days open"),
    "threshold": ("通过比例（%）", "Threshold (%)"),
    "open": ("发起", "Open"),
    "apply": ("执行新价格", "Apply the new price"),
    "saved": ("已保存", "Saved"),
}  # fmt: skip
OFFICE: Final = ("office",)
VIEWERS: Final = ("office", "staff")


def _dt(lang: Lang) -> Callable[..., str]:
    def dt(key: str, **values: object) -> str:
        zh, en = TEXT[key]
        text = en if lang == "en" else zh
        return text.format(**values) if values else text

    return dt


def _who(request: Request, lang: Lang, compound_id: str) -> Principal | Response:
    principal = staff_principal(request)
    if principal is None:
        return to_login(request, lang)
    if not SHED_ID.match(compound_id) or not any(principal.has(r, compound_id) for r in VIEWERS):
        return render_staff(request, "staff/denied.html", lang, principal=principal, status=403)
    return principal


def _page(
    request: Request, lang: Lang, principal: Principal, compound_id: str, *,
    error: str = "", status: int = 200, notice: str = "",
) -> Response:  # fmt: skip
    ctx = ctx_of(request)
    now = board_times(ctx).now_ms
    with ctx.sessions() as db:
        compound = db.get(Compound, compound_id)
        if compound is None:
            return render_staff(request, "staff/denied.html", lang, principal=principal,
                                status=404)  # fmt: skip
        page = money_page.money_page(db, compound_id, now_ms=now, months=1)
        sheds = db.scalars(select(Shed).where(Shed.compound_id == compound_id)).all()
        listed = select(Household.id).where(Household.compound_id == compound_id)
        households = len(db.scalars(listed).all())
        asked = [consultations.public_view(db, c, now)
                 for c in consultations.of_compound(db, compound_id)]  # fmt: skip
        current = order_repo.newest_compound_tariff(db, compound_id)
    return render_staff(
        request, "staff/money.html", lang, principal=principal, dt=_dt(lang),
        compound=compound, page=page, month=page.months[-1].month, sheds=sheds,
        households=households, consultations=asked, error=error, status=status,
        saved=notice, tariff_name=current.name if current is not None else "",
        office=principal.has("office", compound_id), staff=principal.has("staff", compound_id),
    )  # fmt: skip


@router.get("/board/money/{compound_id}")
def money_office(
    request: Request, compound_id: str, lang: LangQuery = None, saved: str | None = None
) -> Response:
    lg = pick_lang(lang)
    principal = _who(request, lg, compound_id)
    if isinstance(principal, Response):
        return principal
    return _page(request, lg, principal, compound_id, notice="saved" if saved else "")


def _int(value: str | None) -> int:
    text = (value or "").strip()
    if not re.fullmatch(r"-?\d{1,12}", text):
        raise MoneyError("not_a_number", f"a whole number, not {text[:16]!r}")
    return int(text)


def _change(db: Any, principal: Principal, compound_id: str, what: str, form: dict[str, str],
            now: int) -> None:  # fmt: skip
    if what == "settings":
        money_page.set_settings(db, principal, compound_id, grid_fen_per_kwh=_int(form.get("grid")),
                                margin_for=form.get("margin_for", ""), now_ms=now)  # fmt: skip
    elif what == "expense":
        money_page.add_expense(db, principal, compound_id, month=form.get("month", ""),
                               amount_fen=_int(form.get("amount")), note=form.get("note", ""),
                               now_ms=now)  # fmt: skip
    elif what == "meter":
        shed = db.get(Shed, form.get("shed", ""))
        if shed is None or shed.compound_id != compound_id:
            raise MoneyError("unknown_shed", "not a shed of this compound")
        money_page.set_meter(db, principal, shed.id, month=form.get("month", ""),
                             energy_wh=_int(form.get("energy")), now_ms=now)  # fmt: skip
    elif what == "households":
        consultations.import_households(db, principal, compound_id, form.get("csv", ""),
                                        now_ms=now)  # fmt: skip
    elif what == "consultation":
        kind = form.get("kind", "")
        proposal: dict[str, Any] | None = None
        if kind == "tariff":
            fen = _int(form.get("fen_per_hour"))
            proposal = {
                "id": f"{compound_id}-price",
                "name": form.get("title", "")[:60],
                "kind": "power_tier",
                "tiers": [{"max_w": 1100, "fen_per_hour": str(fen)}],
            }
            current = order_repo.newest_compound_tariff(db, compound_id)
            if current is not None:
                proposal["id"] = current.id
        elif kind == "sockets":
            proposal = {"shed_id": form.get("shed", ""), "sockets": _int(form.get("sockets"))}
        days = _int(form.get("days"))
        if not 1 <= days <= 90:
            raise ConsultationError("bad_close", "open for 1..90 days")
        consultations.open_consultation(
            db, principal, compound_id, kind=kind, title=form.get("title", ""),
            text=form.get("text", "")[:2000], closes_ms=now + days * DAY_MS,
            threshold_pct=_int(form.get("threshold")), proposal=proposal, now_ms=now,
        )  # fmt: skip
    else:
        raise MoneyError("unknown_form", what)


@router.post("/board/money/{compound_id}/{what}")
async def money_office_post(request: Request, compound_id: str, what: str) -> Response:
    form = await _form(request) if what != "households" else await _big_form(request)
    lg = pick_lang(form.get("lang"))
    principal = _who(request, lg, compound_id)
    if isinstance(principal, Response):
        return principal
    if not principal.has("office", compound_id):
        return render_staff(request, "staff/denied.html", lg, principal=principal, status=403)
    ctx = ctx_of(request)
    try:
        with ctx.sessions.begin() as db:
            _change(db, principal, compound_id, what, form, board_times(ctx).now_ms)
    except (MoneyError, ConsultationError) as err:
        return _page(request, lg, principal, compound_id, error=f"{err} ({err.code})", status=422)
    return RedirectResponse(f"/board/money/{quote(compound_id)}?saved=1"
                            + ("&lang=en" if lg == "en" else ""), 303)  # fmt: skip


@router.post("/board/money/{compound_id}/apply/{cid}")
async def money_office_apply(request: Request, compound_id: str, cid: int) -> Response:
    form = await _form(request)
    lg = pick_lang(form.get("lang"))
    principal = _who(request, lg, compound_id)
    if isinstance(principal, Response):
        return principal
    if not principal.has("staff", compound_id):
        return render_staff(request, "staff/denied.html", lg, principal=principal, status=403)
    ctx = ctx_of(request)
    try:
        with ctx.sessions.begin() as db:
            row = db.get(Consultation, cid)
            if row is None or row.compound_id != compound_id:
                raise ConsultationError("unknown_consultation", f"no consultation {cid}", 404)
            consultations.apply_tariff(db, principal, row, now_ms=board_times(ctx).now_ms)
    except (ConsultationError, ApiError) as err:
        code = getattr(err, "code", "")
        return _page(request, lg, principal, compound_id, error=f"{err} ({code})", status=409)
    return RedirectResponse(f"/board/money/{quote(compound_id)}?saved=1"
                            + ("&lang=en" if lg == "en" else ""), 303)  # fmt: skip


async def _big_form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_CSV_FORM:
        return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items() if v}
