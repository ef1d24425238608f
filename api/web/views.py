"""From the JSON API's answers to what a page shows.

Each function reads one answer tolerantly (a missing or mistyped field shows
as a dash, never as a crash on a resident's phone) and returns a small frozen
view whose fields are ready-made text in the page's language. Money goes
through `money.money` only; amounts are subtracted as integer fen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

from api.web import i18n
from api.web.i18n import Lang, label, t
from api.web.money import DASH, money

CHINA_TZ: Final = timezone(timedelta(hours=8))  # residents read local time; China has one zone
WAITING_PAYMENT: Final = frozenset({"created"})
CLOSED_UNPAID: Final = frozenset({"expired"})
ACTIVE_SESSION: Final = frozenset({"authorized", "charging", "floating"})
FREE_STATES: Final = frozenset({"idle"})
BAD_STATES: Final = frozenset({"fault", "offline", "disabled"})


def _int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(data: Mapping[str, Any], key: str) -> float | None:
    """A measurement (not money): int or float."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _dict(data: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = data.get(key)
    return value if isinstance(value, dict) else None


def _count(value: int | None) -> str:
    return DASH if value is None else str(value)


# --------------------------------------------------------------------------- price


@dataclass(frozen=True, slots=True)
class PriceView:
    lines: tuple[str, ...]


def price_view(price: Mapping[str, Any] | None, lang: Lang) -> PriceView:
    """The posted price as lines ("1元/4小时"), from `items`, else from the summary."""
    if not price:
        return PriceView(())
    key = "en" if lang == "en" else "zh"
    items = price.get("items")
    lines: list[str] = []
    if isinstance(items, list):
        lines = [str(i[key]) for i in items if isinstance(i, dict) and isinstance(i.get(key), str)]
    if not lines:
        summary = _str(price, f"summary_{key}")
        lines = [summary] if summary else []
    return PriceView(tuple(lines))


# --------------------------------------------------------------------------- shed


@dataclass(frozen=True, slots=True)
class ShedView:
    shed_id: str
    name: str
    compound: str
    free_sockets: str
    total_sockets: str
    free_bays: str
    total_bays: str
    has_bays: bool
    online: bool
    price: PriceView


def shed_view(data: Mapping[str, Any], lang: Lang) -> ShedView:
    total_bays = _int(data, "total_bays")
    return ShedView(
        shed_id=_str(data, "shed"),
        name=_str(data, "name") or _str(data, "shed"),
        compound=_str(data, "compound"),
        free_sockets=_count(_int(data, "free_sockets")),
        total_sockets=_count(_int(data, "total_sockets")),
        free_bays=_count(_int(data, "free_bays")),
        total_bays=_count(total_bays),
        has_bays=bool(total_bays),
        online=data.get("online") is True,
        price=price_view(_dict(data, "price"), lang),
    )


# --------------------------------------------------------------------------- socket


@dataclass(frozen=True, slots=True)
class Choice:
    value: str  # the form value: "until_full" or an amount in fen
    text: str
    hint: str


@dataclass(frozen=True, slots=True)
class SocketView:
    shed_id: str
    shed_name: str
    port: int
    state: str
    state_text: str
    tone: str  # "free", "busy" or "bad": the colour of the state badge
    payable: bool
    reason_text: str
    price: PriceView
    deposit_fen: int | None
    choices: tuple[Choice, ...]


def socket_view(data: Mapping[str, Any], lang: Lang, *, shed_id: str, port: int) -> SocketView:
    state = _str(data, "state").lower()
    reason = data.get("reason")
    payable = data.get("payable") is True
    if payable:
        tone = "free"
    elif reason in BAD_STATES or reason == "shed_offline" or state in BAD_STATES:
        tone = "bad"
    else:
        tone = "busy"
    reason_text = ""
    if not payable:
        code = reason if isinstance(reason, str) and reason else state or "offline"
        reason_text = label(i18n.NOT_PAYABLE, code, lang)
        if reason_text == code:  # not a known reason: say at least that it cannot be used
            reason_text = label(i18n.NOT_PAYABLE, "offline", lang)
    deposit = _int(data, "deposit_fen")
    choices: list[Choice] = []
    if deposit is not None and deposit > 0:
        choices.append(
            Choice(
                "until_full",
                t(lang, "until_full", deposit=money(deposit, lang)),
                t(lang, "until_full_hint"),
            )
        )
    amounts = data.get("amounts_fen")
    if isinstance(amounts, list):
        for fen in amounts:
            if isinstance(fen, int) and not isinstance(fen, bool) and fen > 0:
                text = t(lang, "fixed_amount", amount=money(fen, lang))
                choices.append(Choice(str(fen), text, ""))
    return SocketView(
        shed_id=_str(data, "shed") or shed_id,
        shed_name=_str(data, "shed_name") or _str(data, "shed") or shed_id,
        port=_int(data, "port") or port,
        state=state,
        state_text=label(i18n.SOCKET_STATES, state, lang) or DASH,
        tone=tone,
        payable=payable and bool(choices),
        reason_text=reason_text,
        price=price_view(_dict(data, "price"), lang),
        deposit_fen=deposit,
        choices=tuple(choices),
    )


# --------------------------------------------------------------------------- order


@dataclass(frozen=True, slots=True)
class SessionView:
    state_text: str
    power: str
    energy: str
    duration: str
    cost: str
    cost_label: str  # cost so far while it runs, the cost once it has ended
    left: str
    started: str
    active: bool
    ended: bool
    end_text: str
    warnings: tuple[str, ...] = ()  # what the shed saw in the charge curve, in words


@dataclass(frozen=True, slots=True)
class LineView:
    label: str
    quantity: str
    amount: str


@dataclass(frozen=True, slots=True)
class ReceiptView:
    lines: tuple[LineView, ...]
    billed: str
    paid: str
    refund: str
    refund_status: str
    refund_done: bool  # the money is back (not merely settled: ABNORMAL is settled, not done)
    settled: bool


@dataclass(frozen=True, slots=True)
class OrderView:
    out_trade_no: str
    shed: str
    port: str
    status: str
    status_text: str
    until_full: bool
    mode_text: str
    amount: str
    paid: str
    waiting_payment: bool
    pay_url: str  # the provider's page, while the order waits for payment
    problem_text: str
    session: SessionView | None
    receipt: ReceiptView | None
    can_stop: bool
    final: bool  # nothing will change any more: the page stops polling


def duration_text(minutes: float | None, lang: Lang) -> str:
    if minutes is None or minutes < 0:
        return DASH
    h, m = divmod(int(minutes), 60)
    return t(lang, "hours_minutes", h=h, m=m) if h else t(lang, "minutes_only", m=m)


def time_text(ms: int | None, lang: Lang) -> str:
    if ms is None:
        return DASH
    local = datetime.fromtimestamp(ms / 1000, UTC).astimezone(CHINA_TZ)
    if lang == "en":
        return local.strftime("%d %b %H:%M")
    return f"{local.month}月{local.day}日 {local:%H:%M}"


def energy_text(wh: float | None, lang: Lang) -> str:
    if wh is None:
        return DASH
    return f"{wh / 1000:.2f} {'kWh' if lang == 'en' else '度'}"


def power_text(w: float | None) -> str:
    return DASH if w is None else f"{round(w)} W"


def session_view(data: Mapping[str, Any], lang: Lang, *, budget_fen: int | None) -> SessionView:
    state = _str(data, "state").lower()
    ended = _int(data, "ended_ms") is not None or state in {"ended", "closed"}
    active = not ended and state in ACTIVE_SESSION
    cost = _int(data, "cost_fen")
    left = DASH
    if budget_fen is not None and cost is not None and not ended:
        left = money(max(budget_fen - cost, 0), lang)
    end_reason = _str(data, "end_reason")
    never_on = ended and end_reason == "start_failed"  # the socket never switched on
    return SessionView(
        state_text=label(i18n.SESSION_STATES, "ended" if ended else state, lang) or DASH,
        power=power_text(_num(data, "w")),
        energy=energy_text(_num(data, "energy_wh"), lang),
        duration=t(lang, "never_on") if never_on else duration_text(_num(data, "minutes"), lang),
        cost=money(cost, lang),
        cost_label=t(lang, "cost_final" if ended else "cost_so_far"),
        left=left,
        started=time_text(_int(data, "started_ms"), lang),
        active=active,
        ended=ended,
        end_text=label(i18n.END_REASONS, end_reason, lang) if ended else "",
        warnings=tuple(
            label(i18n.CHARGE_WARNINGS, str(kind), lang)
            for kind in (data.get("warnings") or [])
            if str(kind) in i18n.CHARGE_WARNINGS
        ),
    )


def _quantity(line: Mapping[str, Any], lang: Lang) -> str:
    quantity = line.get("quantity")
    if quantity is None or isinstance(quantity, bool):
        return ""
    unit = _str(line, "unit")
    pair = i18n.UNITS.get(unit.lower())
    unit_text = (pair[1] if lang == "en" else pair[0]) if pair else unit
    return f"{quantity} {unit_text}".strip()


def receipt_view(data: Mapping[str, Any], lang: Lang, *, paid_fen: int | None) -> ReceiptView:
    lines: list[LineView] = []
    raw_lines = data.get("lines")
    for line in raw_lines if isinstance(raw_lines, list) else []:
        if not isinstance(line, dict):
            continue
        text = _str(line, "label_en" if lang == "en" else "label_zh") or _str(line, "code")
        lines.append(LineView(text, _quantity(line, lang), money(_int(line, "amount_fen"), lang)))
    refund_fen = _int(data, "refund_fen")
    status = _str(data, "refund_status").lower()
    if refund_fen == 0 and status in {"", "none"}:
        status = "none"
    return ReceiptView(
        lines=tuple(lines),
        billed=money(_int(data, "billed_fen"), lang),
        paid=money(paid_fen, lang),
        refund=money(refund_fen, lang),
        refund_status=label(i18n.REFUND_STATUSES, status or "processing", lang),
        refund_done=status in {"success", "refunded", "none"},
        settled=status in i18n.REFUND_SETTLED,
    )


def order_view(data: Mapping[str, Any], lang: Lang) -> OrderView:
    status = _str(data, "status").lower()
    paid_fen = _int(data, "paid_fen")
    amount_fen = _int(data, "amount_fen")
    session_data = _dict(data, "session")
    receipt_data = _dict(data, "receipt")
    budget = paid_fen if paid_fen else amount_fen
    session = session_view(session_data, lang, budget_fen=budget) if session_data else None
    receipt = receipt_view(receipt_data, lang, paid_fen=paid_fen) if receipt_data else None
    mode = _str(data, "mode")
    final = (receipt is not None and receipt.settled) or (
        status in CLOSED_UNPAID and session is None
    )
    port = _int(data, "port")
    waiting = status in WAITING_PAYMENT and session is None
    pay_url = _str(data, "pay_url")
    problem = _str(data, "problem").partition(":")[0]
    return OrderView(
        out_trade_no=_str(data, "out_trade_no"),
        shed=_str(data, "shed"),
        port=DASH if port is None else str(port),
        status=status,
        status_text=label(i18n.ORDER_STATUSES, status, lang) or DASH,
        until_full=mode == "until_full",
        mode_text=t(lang, "mode_until_full" if mode == "until_full" else "mode_amount"),
        amount=money(amount_fen, lang),
        paid=money(paid_fen, lang),
        waiting_payment=waiting,
        pay_url=pay_url if waiting and pay_url.startswith(("https://", "http://")) else "",
        problem_text=label(i18n.ORDER_PROBLEMS, problem, lang),
        session=session,
        receipt=receipt,
        can_stop=session is not None and session.active and receipt is None,
        final=final,
    )


def sessions_of(body: Any) -> list[dict[str, Any]]:
    """`GET /api/v1/me/sessions`: a list, or a list under "sessions", "orders" or "items"."""
    items: Any = body
    if isinstance(body, dict):
        for key in ("sessions", "orders", "items"):
            if isinstance(body.get(key), list):
                items = body[key]
                break
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def masked_phone(phone: str) -> str:
    """`13812345678` -> `138****5678`: enough to recognise, not to read off a screen."""
    return f"{phone[:3]}****{phone[-4:]}" if len(phone) == 11 else phone
