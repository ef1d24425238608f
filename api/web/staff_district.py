"""The district view for admins of several compounds: `GET /board/district`
(docs/staff-board.md, "District view"). One row per compound: sheds online,
sockets by state, alarms open, energy, revenue and unserved demand today,
with links down to each shed's board, the compound's report and money page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.routes.staff_board import board_times
from api.services import district_view
from api.web.i18n import Lang, pick_lang
from api.web.money import money
from api.web.routes import LangQuery
from api.web.staff_render import ctx_of, render_staff, staff_principal, to_login

router = APIRouter(include_in_schema=False)
STATE_ORDER: Final = ("charging", "floating", "authorized", "finishing", "idle", "fault",
                      "offline", "disabled")  # fmt: skip
TEXT: Final[dict[str, tuple[str, str]]] = {
    "title": ("片区总览", "District view"),
    "intro": ("今日（北京时间）各小区的车棚、插座、报警、电量、收入和未满足的需求。",
              "Today (China time): each compound's sheds, sockets, alarms, energy, revenue"
              " and unserved demand."),
    "compound": ("小区", "Compound"),
    "sheds_online": ("在线车棚", "Sheds online"),
    "sockets": ("插座状态", "Sockets by state"),
    "alarms": ("未处理报警", "Alarms open"),
    "energy": ("今日电量", "Energy today"),
    "revenue": ("今日收入", "Revenue today"),
    "sessions": ("今日充电次数", "Sessions today"),
    "unserved": ("今日未满足需求", "Unserved today"),
    "total": ("合计", "Total"),
    "links": ("查看", "Open"),
    "report": ("报表", "Report"),
    "money": ("账目公开", "Money page"),
    "money_office": ("账目与征询管理", "Money and consultations"),
    "denied": ("片区总览仅限管理员", "The district view is for admins"),
    "offline_shed": ("离线", "offline"),
}  # fmt: skip


def _t(lang: Lang) -> Callable[[str], str]:
    def dt(key: str) -> str:
        zh, en = TEXT[key]
        return en if lang == "en" else zh

    return dt


@router.get("/board/district")
def district_page(request: Request, lang: LangQuery = None) -> Response:
    lg = pick_lang(lang)
    principal = staff_principal(request)
    if principal is None:
        return to_login(request, lg)
    if not principal.has_any(*district_view.ROLES):
        return render_staff(request, "staff/denied.html", lg, principal=principal, status=403)
    ctx = ctx_of(request)
    with ctx.sessions() as db:
        view = district_view.district(db, principal, board_times(ctx))
    return render_staff(
        request, "staff/district.html", lg, principal=principal, view=view,
        total=view.total(), dt=_t(lg), states=STATE_ORDER,
        yuan=lambda fen: money(fen, lg),
        kwh=lambda wh: f"{wh / 1000:.3f} kWh",
    )  # fmt: skip
