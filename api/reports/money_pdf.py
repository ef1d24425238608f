"""The money page's monthly PDF, for the owners' committee to post (A4, in
Chinese with English beside each line; docs/money-page.md).

The figures are those of `MoneyPage` (api/services/money_page.py), drawn as
lines of text: `lines(...)` gives them as plain strings, the very strings the
PDF shows. Chinese needs a TrueType CJK font (fonts-wqy-microhei), as the QR
sheet does (controller/qrsheet.py); without one reportlab's STSong-Light CID
font is used, which is not embedded.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from api.services.money_page import MoneyPage, MonthMoney
from api.web.money import yuan

CJK_FONTS: Final[tuple[Path, ...]] = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
)
BUILTIN_CJK: Final = "STSong-Light"
BAR: Final = (0.06, 0.46, 0.43)
INK: Final = (0.07, 0.07, 0.07)
SUBTITLE: Final = "与物业报表出自同一记录 · The same records as the office's reports"
FOOTER: Final = "本页只有合计，不含任何住户信息。Totals only: nothing here identifies a resident."


def font() -> tuple[str, bool]:
    """(registered font name, embedded?)."""
    for path in CJK_FONTS:
        if path.is_file():
            name = "EbsCJK-" + hashlib.sha256(str(path).encode()).hexdigest()[:8]
            if name not in pdfmetrics.getRegisteredFontNames():
                pdfmetrics.registerFont(TTFont(name, str(path), subfontIndex=0))
            return name, True
    if BUILTIN_CJK not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(BUILTIN_CJK))
    return BUILTIN_CJK, False


def _kwh(wh: int | None) -> str:
    return "—" if wh is None else f"{wh / 1000:.3f} kWh"


def _yuan(fen: int | None) -> str:
    return "—" if fen is None else f"{yuan(fen)} 元"


def lines(page: MoneyPage, month: MonthMoney) -> list[tuple[str, str]]:
    """(label, value) of each figure, as the PDF writes them."""
    price = page.grid_fen_per_kwh
    rows = [
        ("充电次数 Sessions", str(month.sessions)),
        ("充电电量 Energy delivered", _kwh(month.energy_wh)),
        ("收入 Money taken", _yuan(month.billed_fen)),
        ("退款 Refunds", _yuan(month.refund_fen)),
        (
            "购电量 Electricity bought",
            _kwh(month.bought_wh)
            + (" (总电表 main meter)" if month.metered_wh is not None else " (插座合计 sockets)"),
        ),
    ]
    if month.losses_wh is not None:
        rows.append(("线损 Losses", _kwh(month.losses_wh)))
    rows += [
        (
            "电网电价 Grid price",
            "—" if price is None else f"{yuan(price)} 元/kWh",
        ),
        ("电费 Electricity cost", _yuan(month.electricity_fen)),
        ("其他支出 Expenses", _yuan(month.expenses_fen)),
        ("结余 Left (margin)", _yuan(month.margin_fen)),
    ]
    return rows


def render(page: MoneyPage, month: str) -> bytes:
    """The PDF of `month` (one of `page.months`), with the year's chart."""
    shown = next((m for m in page.months if m.month == month), None)
    if shown is None:
        raise KeyError(month)
    name, _embedded = font()
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4, invariant=True)
    canvas.setTitle(f"{page.compound_name} {month}")
    width, height = A4
    left, y = 20 * mm, height - 25 * mm
    canvas.setFillColorRGB(*INK)
    canvas.setFont(name, 18)
    canvas.drawString(left, y, f"{page.compound_name} · 车棚账目公开 {month}")
    y -= 8 * mm
    canvas.setFont(name, 10)
    canvas.drawString(
        left,
        y,
        SUBTITLE,
    )
    if page.margin_for:
        y -= 6 * mm
        canvas.drawString(left, y, f"结余用途 What is left is for: {page.margin_for}")
    y -= 12 * mm
    canvas.setFont(name, 12)
    for label, value in lines(page, shown):
        canvas.drawString(left, y, label)
        canvas.drawRightString(width - 20 * mm, y, value)
        y -= 7.5 * mm
    if shown.expenses:
        y -= 4 * mm
        canvas.drawString(left, y, "支出明细 Expense lines")
        y -= 7 * mm
        canvas.setFont(name, 10)
        for expense in shown.expenses:
            canvas.drawString(left + 4 * mm, y, expense.note[:60])
            canvas.drawRightString(width - 20 * mm, y, _yuan(expense.amount_fen))
            y -= 6 * mm
    _chart(canvas, name, page.months, left, 30 * mm, width - 40 * mm, 60 * mm)
    canvas.setFont(name, 8)
    canvas.drawString(
        left,
        15 * mm,
        FOOTER,
    )
    canvas.showPage()
    canvas.save()
    return out.getvalue()


def _chart(
    canvas: Canvas,
    font_name: str,
    months: Sequence[MonthMoney],
    x: float,
    y: float,
    w: float,
    h: float,
) -> None:
    """Money taken per month (yuan), as bars."""
    canvas.setFont(font_name, 10)
    canvas.drawString(x, y + h + 4 * mm, "每月收入（元） Money taken per month (yuan)")
    peak = max([m.billed_fen for m in months] + [1])
    step = w / max(1, len(months))
    canvas.setFont(font_name, 7)
    for i, m in enumerate(months):
        bar_h = (h - 8 * mm) * m.billed_fen / peak
        canvas.setFillColorRGB(*BAR)
        canvas.rect(x + i * step + step * 0.1, y + 5 * mm, step * 0.8, bar_h, stroke=0, fill=1)
        canvas.setFillColorRGB(*INK)
        canvas.drawCentredString(x + i * step + step / 2, y, m.month[2:])
        canvas.drawCentredString(x + i * step + step / 2, y + 6 * mm + bar_h, yuan(m.billed_fen))
