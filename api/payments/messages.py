"""Request bodies and response readers of payments-v1. Pure: bytes in, values out.

Bodies are compact UTF-8 JSON with the contract's field order (the order of
the contract's vector), so what is signed is exactly what is sent. Readers
raise `BadProviderResponse("bad_response")` for anything they cannot trust.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from api.payments import fields
from api.payments.errors import BadProviderResponse, InvalidRequest
from api.payments.models import OrderQuery, RefundResult, RefundStatus, TradeState

OUT_TRADE_NO: Final = re.compile(r"[A-Za-z0-9_-]{6,32}")
OUT_REFUND_NO: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
CURRENCY: Final = "CNY"
MAX_DESCRIPTION_CHARS: Final = 127


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """Compact JSON, UTF-8, non-ASCII kept as is (as in the contract's vector)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def check_out_trade_no(out_trade_no: str) -> str:
    if not OUT_TRADE_NO.fullmatch(out_trade_no):
        raise InvalidRequest(f"out_trade_no must be 6..32 of [A-Za-z0-9_-]: {out_trade_no!r}")
    return out_trade_no


def check_out_refund_no(out_refund_no: str) -> str:
    if not OUT_REFUND_NO.fullmatch(out_refund_no):
        raise InvalidRequest(f"out_refund_no must be 1..64 of [A-Za-z0-9_-]: {out_refund_no!r}")
    return out_refund_no


def check_fen(name: str, value: int, *, minimum: int = 1) -> int:
    if type(value) is not int or value < minimum:
        raise InvalidRequest(f"{name} must be an integer number of fen >= {minimum}: {value!r}")
    return value


def rfc3339(moment: datetime) -> str:
    """`2026-11-22T20:10:00+08:00`: seconds, with the offset. Naive times are refused."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidRequest("time_expire must carry a time zone")
    return moment.isoformat(timespec="seconds")


def order_body(
    *,
    appid: str,
    mchid: str,
    description: str,
    out_trade_no: str,
    time_expire: datetime,
    notify_url: str,
    amount_fen: int,
) -> bytes:
    """The body of `POST /v3/pay/transactions/native`."""
    check_out_trade_no(out_trade_no)
    check_fen("amount_fen", amount_fen)
    if not description or len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidRequest(f"description must be 1..{MAX_DESCRIPTION_CHARS} characters")
    if not notify_url.startswith(("https://", "http://")):
        raise InvalidRequest(f"notify_url must be an http(s) URL: {notify_url!r}")
    return canonical_json(
        {
            "appid": appid,
            "mchid": mchid,
            "description": description,
            "out_trade_no": out_trade_no,
            "time_expire": rfc3339(time_expire),
            "notify_url": notify_url,
            "amount": {"total": amount_fen, "currency": CURRENCY},
        }
    )


def close_body(mchid: str) -> bytes:
    """The body of `POST .../out-trade-no/{no}/close`."""
    return canonical_json({"mchid": mchid})


def refund_body(out_trade_no: str, out_refund_no: str, refund_fen: int, total_fen: int) -> bytes:
    """The body of `POST /v3/refund/domestic/refunds` (exactly the contract's fields)."""
    check_out_trade_no(out_trade_no)
    check_out_refund_no(out_refund_no)
    check_fen("total_fen", total_fen)
    check_fen("refund_fen", refund_fen)
    if refund_fen > total_fen:
        raise InvalidRequest(f"refund_fen {refund_fen} exceeds total_fen {total_fen}")
    return canonical_json(
        {
            "out_trade_no": out_trade_no,
            "out_refund_no": out_refund_no,
            "amount": {"refund": refund_fen, "total": total_fen, "currency": CURRENCY},
        }
    )


def read_code_url(body: bytes) -> str:
    try:
        return fields.text(fields.load_object(body), "code_url")
    except fields.FieldError as err:
        raise BadProviderResponse("bad_response", f"order creation: {err}") from err


def read_order_query(body: bytes) -> OrderQuery:
    try:
        content = fields.load_object(body)
        state = TradeState(fields.text(content, "trade_state"))
        amount = fields.obj(content, "amount")
        paid = state in (TradeState.SUCCESS, TradeState.REFUND)
        return OrderQuery(
            out_trade_no=fields.text(content, "out_trade_no"),
            trade_state=state,
            trade_state_desc=fields.optional_text(content, "trade_state_desc"),
            amount_fen=fields.fen(amount, "total"),
            transaction_id=fields.text(content, "transaction_id") if paid else None,
            payer_total=fields.fen(amount, "payer_total") if paid else None,
            success_time=fields.timestamp(content, "success_time") if paid else None,
        )
    except (fields.FieldError, ValueError) as err:
        raise BadProviderResponse("bad_response", f"order query: {err}") from err


def read_refund_result(body: bytes) -> RefundResult:
    try:
        content = fields.load_object(body)
        amount = fields.obj(content, "amount")
        return RefundResult(
            out_refund_no=fields.text(content, "out_refund_no"),
            refund_id=fields.text(content, "refund_id"),
            status=RefundStatus(fields.text(content, "status")),
            refund_fen=fields.fen(amount, "refund"),
            total_fen=fields.fen(amount, "total"),
            success_time=fields.optional_timestamp(content, "success_time"),
        )
    except (fields.FieldError, ValueError) as err:
        raise BadProviderResponse("bad_response", f"refund: {err}") from err


def read_error(body: bytes) -> tuple[str, str]:
    """`(code, message)` of a provider error answer; tolerant, it only feeds an error."""
    try:
        content = fields.load_object(body)
    except fields.FieldError:
        return "UNKNOWN", body[:200].decode("utf-8", "replace")
    code = content.get("code")
    message = content.get("message")
    return (
        code if isinstance(code, str) and code else "UNKNOWN",
        message if isinstance(message, str) else "",
    )
