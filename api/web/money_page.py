"""The shed's public money page and its monthly PDF (docs/money-page.md).

| page | what |
|---|---|
| `GET /money/{compound_id}` | month by month: sessions, energy, money, electricity, margin |
| `GET /money/{compound_id}/month/{month}.pdf` | one month as a PDF the committee can post |
| `GET /money/shed/{shed_id}` | 303 to the page of the shed's compound (the shed page links here) |

No login. Chinese first, English with `?lang=en`, as the resident pages.
The figures come from the JSON API (`/api/v1/money/...`, api/routes/money.py).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from api.reports import charts, money_pdf
from api.services.money_page import Expense, MoneyPage, MonthMoney, totals
from api.web import i18n
from api.web.client import ApiClient, Problem, api_client
from api.web.money import money
from api.web.routes import SECURITY_HEADERS, SHED_ID, _lang, error_page, lang_query, render

router = APIRouter(include_in_schema=False)
ApiDep = Annotated[ApiClient, Depends(api_client)]
LangQuery = Annotated[str | None, Query(alias="lang", max_length=8)]
MONTH: Final = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def page_of(data: dict[str, Any]) -> MoneyPage:
    """The API's JSON back into a `MoneyPage` (what the PDF draws from)."""
    months = []
    for m in data["months"]:
        month = MonthMoney(**{k: v for k, v in m.items() if k != "expenses"})
        month.expenses = [Expense(int(e["amount_fen"]), str(e["note"])) for e in m["expenses"]]
        months.append(month)
    return MoneyPage(
        str(data["compound"]["id"]),
        str(data["compound"]["name"]),
        data["grid_fen_per_kwh"],
        str(data["margin_for"]),
        months,
    )


def _kwh(wh: int | None, lang: str) -> str:
    if wh is None:
        return "—"
    return f"{wh / 1000:.3f} " + ("kWh" if lang == "en" else "度")


@router.get("/money/shed/{shed_id}")
async def shed_money(
    request: Request, shed_id: str, api: ApiDep, lang: LangQuery = None
) -> Response:
    lg = _lang(request, lang)
    if not SHED_ID.match(shed_id):
        return error_page(request, lg, Problem(404, "not_found", ""), title_key="no_such_shed")
    answer = await api.get(f"/api/v1/money/shed/{shed_id}")
    if not answer.ok:
        return error_page(request, lg, answer.problem, title_key="no_such_shed")
    compound_id = str(answer.json_dict()["compound_id"])
    return RedirectResponse(f"/money/{quote(compound_id)}{lang_query(lg)}", 303)


@router.get("/money/{compound_id}")
async def money_html(
    request: Request, compound_id: str, api: ApiDep, lang: LangQuery = None
) -> Response:
    lg = _lang(request, lang)
    if not SHED_ID.match(compound_id):
        return error_page(request, lg, Problem(404, "not_found", ""), title_key="no_such_compound")
    answer = await api.get(f"/api/v1/money/{quote(compound_id)}")
    if not answer.ok:
        return error_page(request, lg, answer.problem, title_key="no_such_compound")
    page = page_of(answer.json_dict())
    asked = answer.json_dict().get("consultations") or []
    labels = [m.month[2:] for m in page.months]
    taken = [m.billed_fen / 100 for m in page.months]
    electricity = [(m.electricity_fen or 0) / 100 for m in page.months]
    unit = " 元" if lg == "zh" else " yuan"
    taken_title = i18n.t(lg, "money_chart_taken")
    electricity_title = i18n.t(lg, "money_chart_electricity")
    shown_charts = [
        (taken_title, charts.bars(taken_title, labels, taken, unit=unit)),
        (
            electricity_title,
            charts.bars(electricity_title, labels, electricity, unit=unit, color=charts.BAR_ALT),
        ),
    ]
    rows = [
        {
            "month": m.month,
            "sessions": m.sessions,
            "energy": _kwh(m.energy_wh, lg),
            "taken": money(m.billed_fen, lg),
            "refunds": money(m.refund_fen, lg),
            "bought": _kwh(m.bought_wh, lg),
            "losses": _kwh(m.losses_wh, lg),
            "metered": m.metered_wh is not None,
            "electricity": money(m.electricity_fen, lg),
            "expenses": money(m.expenses_fen, lg),
            "margin": money(m.margin_fen, lg),
            "negative": m.margin_fen is not None and m.margin_fen < 0,
            "lines": [(e.note, money(e.amount_fen, lg)) for e in m.expenses],
            "pdf": f"/money/{quote(page.compound_id)}/month/{m.month}.pdf",
        }
        for i, m in enumerate(reversed(page.months))
        if i == 0 or m.sessions or m.expenses  # quiet months stay in the totals and the chart
    ]
    sums = totals(page.months)
    first, last = page.months[0].month, page.months[-1].month
    total = {
        "sessions": sums["sessions"],
        "energy": _kwh(sums["energy_wh"], lg),
        "taken": money(sums["billed_fen"], lg),
        "refunds": money(sums["refund_fen"], lg),
        "bought": _kwh(sums["bought_wh"], lg),
        "electricity": money(sums["electricity_fen"], lg),
        "expenses": money(sums["expenses_fen"], lg),
        "margin": money(sums["margin_fen"], lg),
    }
    price = None if page.grid_fen_per_kwh is None else money(page.grid_fen_per_kwh, lg)
    return render(
        request, "money.html", lg, page=page, rows=rows, total=total, charts=shown_charts,
        price=price, span=f"{first} – {last}", consultations=asked,
    )  # fmt: skip


@router.get("/money/{compound_id}/month/{month}.pdf")
async def money_pdf_route(
    request: Request, compound_id: str, month: str, api: ApiDep, lang: LangQuery = None
) -> Response:
    lg = _lang(request, lang)
    if not SHED_ID.match(compound_id) or not MONTH.match(month):
        return error_page(request, lg, Problem(404, "not_found", ""), title_key="no_such_compound")
    answer = await api.get(f"/api/v1/money/{quote(compound_id)}?months=24")
    if not answer.ok:
        return error_page(request, lg, answer.problem, title_key="no_such_compound")
    page = page_of(answer.json_dict())
    index = next((i for i, m in enumerate(page.months) if m.month == month), None)
    if index is None:
        return error_page(request, lg, Problem(404, "not_found", ""), title_key="no_such_compound")
    year = MoneyPage(page.compound_id, page.compound_name, page.grid_fen_per_kwh,
                     page.margin_for, page.months[max(0, index - 11) : index + 1])  # fmt: skip
    pdf = money_pdf.render(year, month)
    headers = {
        "Cache-Control": "no-store",
        "Content-Disposition": f'inline; filename="money-{page.compound_id}-{month}.pdf"',
        **SECURITY_HEADERS,
    }
    return Response(pdf, media_type="application/pdf", headers=headers)
