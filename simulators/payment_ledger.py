"""The payment provider's books: orders and refunds of one merchant. Pure.

Every method takes `now_s` (Unix seconds) and returns the changed record or a
`Refusal` (HTTP status, provider error code, message): no I/O, no clock, and
randomness only from the `random.Random` it is given. Money is integer fen.

Rules (payments-v1):
- `out_trade_no` is 6..32 of `[A-Za-z0-9_-]`, unique per merchant. Creating
  it again with the same fields gives the same order (a safe retry); with other
  fields it is refused (`OUT_TRADE_NO_USED`).
- An order not paid by `time_expire` (default 10 min) is closed.
- One `out_refund_no` refunds at most once; a repeat returns the same refund.
  A refund never exceeds the order total minus what is refunded or refunding.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from simulators.payment_wire import rfc3339

OUT_TRADE_NO: Final = re.compile(r"[A-Za-z0-9_-]{6,32}")
OUT_REFUND_NO: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
DEFAULT_EXPIRE_S: Final = 600
STATE_DESC: Final = {
    "NOTPAY": "未支付",
    "SUCCESS": "支付成功",
    "CLOSED": "已关闭",
    "REFUND": "转入退款",
}
REFUND_ACCOUNT: Final = "支付用户零钱"  # back to the payer's original payment, not a wallet
RefundOutcome = Literal["SUCCESS", "ABNORMAL", "CLOSED"]


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str


@dataclass
class SimOrder:
    out_trade_no: str
    appid: str
    mchid: str
    description: str
    amount_fen: int
    notify_url: str
    time_expire_s: int
    code_url: str
    created_s: int
    fingerprint: tuple[str, ...] = field(repr=False)
    state: str = "NOTPAY"  # NOTPAY -> SUCCESS -> REFUND, or NOTPAY -> CLOSED
    closed_by: str = ""  # "merchant" or "expiry"
    transaction_id: str | None = None
    success_s: int | None = None
    payer_openid: str | None = None
    resource: dict[str, Any] | None = field(default=None, repr=False)  # as notified


@dataclass
class SimRefund:
    out_refund_no: str
    refund_id: str
    out_trade_no: str
    transaction_id: str
    refund_fen: int
    total_fen: int
    notify_url: str
    created_s: int
    status: str = "PROCESSING"  # PROCESSING -> SUCCESS | ABNORMAL | CLOSED
    success_s: int | None = None


def _field_error(name: str, why: str) -> Refusal:
    return Refusal(400, "PARAM_ERROR", f"{name}: {why}")


def _fen(parent: Mapping[str, Any], name: str) -> int | Refusal:
    value = parent.get(name)
    if type(value) is not int or value <= 0:
        return _field_error(f"amount.{name}", "must be a positive integer number of fen")
    return value


class ProviderLedger:
    def __init__(
        self,
        mchid: str,
        appid: str,
        *,
        rng: random.Random,
        code_url: Callable[[str], str],
    ) -> None:
        self.mchid = mchid
        self.appid = appid
        self.orders: dict[str, SimOrder] = {}
        self.refunds: dict[str, SimRefund] = {}
        self._rng = rng
        self._code_url = code_url
        self._seq = 0

    # --- orders -------------------------------------------------------------

    def create_order(self, body: Mapping[str, Any], now_s: int) -> SimOrder | Refusal:
        self.expire(now_s)
        checked = self._check_order(body, now_s)
        if isinstance(checked, Refusal):
            return checked
        order = self.orders.get(checked.out_trade_no)
        if order is None:
            self.orders[checked.out_trade_no] = checked
            return checked
        if order.state in ("SUCCESS", "REFUND"):
            return Refusal(400, "ORDERPAID", "this out_trade_no is already paid")
        if order.state == "CLOSED":
            return Refusal(400, "ORDER_CLOSED", "this out_trade_no is closed")
        if order.fingerprint != checked.fingerprint:
            return Refusal(400, "OUT_TRADE_NO_USED", "out_trade_no reused with other fields")
        return order

    def _check_order(self, body: Mapping[str, Any], now_s: int) -> SimOrder | Refusal:
        for name in ("appid", "mchid", "description", "out_trade_no", "notify_url"):
            if type(body.get(name)) is not str or not body[name]:
                return _field_error(name, "required string")
        if body["mchid"] != self.mchid:
            return Refusal(400, "MCH_NOT_EXISTS", f"unknown mchid {body['mchid']}")
        if body["appid"] != self.appid:
            return Refusal(400, "APPID_MCHID_NOT_MATCH", "appid is not bound to this mchid")
        if not OUT_TRADE_NO.fullmatch(body["out_trade_no"]):
            return _field_error("out_trade_no", "must be 6..32 of [A-Za-z0-9_-]")
        if len(body["description"]) > 127:
            return _field_error("description", "at most 127 characters")
        if not body["notify_url"].startswith(("https://", "http://")):
            return _field_error("notify_url", "must be an http(s) URL")
        amount = body.get("amount")
        if type(amount) is not dict:
            return _field_error("amount", "required object")
        total = _fen(amount, "total")
        if isinstance(total, Refusal):
            return total
        if amount.get("currency", "CNY") != "CNY":
            return _field_error("amount.currency", "only CNY")
        expire_s = now_s + DEFAULT_EXPIRE_S
        raw_expire = body.get("time_expire")
        if raw_expire is not None:
            try:
                when = datetime.fromisoformat(raw_expire) if type(raw_expire) is str else None
            except ValueError:
                when = None
            if when is None or when.tzinfo is None:
                return _field_error("time_expire", "RFC 3339 time with an offset")
            expire_s = int(when.timestamp())
            if expire_s <= now_s:
                return _field_error("time_expire", "is in the past")
        no = body["out_trade_no"]
        return SimOrder(
            out_trade_no=no,
            appid=body["appid"],
            mchid=body["mchid"],
            description=body["description"],
            amount_fen=total,
            notify_url=body["notify_url"],
            time_expire_s=expire_s,
            code_url=self._code_url(no),
            created_s=now_s,
            fingerprint=(body["description"], str(total), body["notify_url"], str(expire_s)),
        )

    def expire(self, now_s: int) -> list[SimOrder]:
        """Close every unpaid order whose `time_expire` has passed."""
        closed = []
        for order in self.orders.values():
            if order.state == "NOTPAY" and now_s >= order.time_expire_s:
                order.state, order.closed_by = "CLOSED", "expiry"
                closed.append(order)
        return closed

    def order(self, out_trade_no: str, now_s: int) -> SimOrder | Refusal:
        self.expire(now_s)
        order = self.orders.get(out_trade_no)
        if order is None:
            return Refusal(404, "ORDER_NOT_EXIST", "no such order")
        return order

    def pay(self, out_trade_no: str, now_s: int) -> SimOrder | Refusal:
        """The resident confirms payment. Returns the order, newly paid."""
        order = self.order(out_trade_no, now_s)
        if isinstance(order, Refusal):
            return order
        if order.state in ("SUCCESS", "REFUND"):
            return Refusal(400, "ORDERPAID", "already paid")
        if order.state == "CLOSED":
            return Refusal(400, "ORDER_CLOSED", f"closed by {order.closed_by}")
        self._seq += 1
        day = rfc3339(now_s)[:10].replace("-", "")
        order.state = "SUCCESS"
        order.transaction_id = f"4200000000{day}{self._seq:010d}"
        order.success_s = now_s
        order.payer_openid = "o" + "".join(
            self._rng.choice(string.ascii_letters + string.digits + "_-") for _ in range(27)
        )
        order.resource = self.transaction_resource(order)
        return order

    def close(self, out_trade_no: str, now_s: int) -> SimOrder | Refusal:
        order = self.order(out_trade_no, now_s)
        if isinstance(order, Refusal):
            return order
        if order.state in ("SUCCESS", "REFUND"):
            return Refusal(400, "ORDERPAID", "a paid order cannot be closed")
        if order.state == "NOTPAY":
            order.state, order.closed_by = "CLOSED", "merchant"
        return order

    # --- refunds ------------------------------------------------------------

    def refundable_fen(self, order: SimOrder) -> int:
        taken = sum(
            r.refund_fen
            for r in self.refunds.values()
            if r.out_trade_no == order.out_trade_no and r.status in ("PROCESSING", "SUCCESS")
        )
        return order.amount_fen - taken

    def refund(self, body: Mapping[str, Any], now_s: int) -> tuple[SimRefund, bool] | Refusal:
        """A refund request; returns `(refund, created)`. A repeated `out_refund_no` is not new."""
        for name in ("out_trade_no", "out_refund_no"):
            if type(body.get(name)) is not str:
                return _field_error(name, "required string")
        if not OUT_REFUND_NO.fullmatch(body["out_refund_no"]):
            return _field_error("out_refund_no", "must be 1..64 of [A-Za-z0-9_-]")
        amount = body.get("amount")
        if type(amount) is not dict:
            return _field_error("amount", "required object")
        refund_fen, total_fen = _fen(amount, "refund"), _fen(amount, "total")
        if isinstance(refund_fen, Refusal):
            return refund_fen
        if isinstance(total_fen, Refusal):
            return total_fen
        if amount.get("currency", "CNY") != "CNY":
            return _field_error("amount.currency", "only CNY")
        notify_url = body.get("notify_url")
        if notify_url is not None and type(notify_url) is not str:
            return _field_error("notify_url", "must be a string")
        existing = self.refunds.get(body["out_refund_no"])
        if existing is not None:
            if existing.out_trade_no != body["out_trade_no"] or existing.refund_fen != refund_fen:
                return Refusal(400, "OUT_REFUND_NO_USED", "out_refund_no reused with other fields")
            return existing, False
        order = self.orders.get(body["out_trade_no"])
        if order is None:
            return Refusal(404, "RESOURCE_NOT_EXISTS", "no such order")
        if order.state not in ("SUCCESS", "REFUND") or order.transaction_id is None:
            return Refusal(400, "TRADE_NOT_PAID", "the order is not paid")
        if total_fen != order.amount_fen:
            return _field_error("amount.total", f"is not the order total {order.amount_fen}")
        left = self.refundable_fen(order)
        if refund_fen > left:
            return Refusal(
                400, "REFUND_AMOUNT_EXCEEDED", f"refund {refund_fen} > refundable {left} fen"
            )
        self._seq += 1
        refund = SimRefund(
            out_refund_no=body["out_refund_no"],
            refund_id=f"5030000000{rfc3339(now_s)[:10].replace('-', '')}{self._seq:010d}",
            out_trade_no=order.out_trade_no,
            transaction_id=order.transaction_id,
            refund_fen=refund_fen,
            total_fen=total_fen,
            notify_url=notify_url or order.notify_url,
            created_s=now_s,
        )
        self.refunds[refund.out_refund_no] = refund
        return refund, True

    def settle_refund(self, out_refund_no: str, outcome: RefundOutcome, now_s: int) -> SimRefund:
        """The bank's answer for a PROCESSING refund."""
        refund = self.refunds[out_refund_no]
        if refund.status != "PROCESSING":
            return refund
        refund.status = outcome
        if outcome == "SUCCESS":
            refund.success_s = now_s
            self.orders[refund.out_trade_no].state = "REFUND"
        return refund

    # --- payloads -----------------------------------------------------------

    def transaction_resource(self, order: SimOrder) -> dict[str, Any]:
        """The plaintext of TRANSACTION.SUCCESS, fields in the vector's order."""
        assert order.success_s is not None
        return {
            "mchid": order.mchid,
            "appid": order.appid,
            "out_trade_no": order.out_trade_no,
            "transaction_id": order.transaction_id,
            "trade_type": "NATIVE",
            "trade_state": "SUCCESS",
            "trade_state_desc": STATE_DESC["SUCCESS"],
            "bank_type": "OTHERS",
            "success_time": rfc3339(order.success_s),
            "payer": {"openid": order.payer_openid},
            "amount": {
                "total": order.amount_fen,
                "payer_total": order.amount_fen,
                "currency": "CNY",
                "payer_currency": "CNY",
            },
        }

    def query_payload(self, order: SimOrder) -> dict[str, Any]:
        """The answer to an order query."""
        out: dict[str, Any] = {
            "appid": order.appid,
            "mchid": order.mchid,
            "out_trade_no": order.out_trade_no,
            "trade_state": order.state,
            "trade_state_desc": STATE_DESC[order.state],
            "amount": {"total": order.amount_fen, "currency": "CNY"},
        }
        if order.state in ("SUCCESS", "REFUND"):
            assert order.success_s is not None
            out |= {
                "transaction_id": order.transaction_id,
                "trade_type": "NATIVE",
                "bank_type": "OTHERS",
                "success_time": rfc3339(order.success_s),
                "payer": {"openid": order.payer_openid},
                "amount": {
                    "total": order.amount_fen,
                    "payer_total": order.amount_fen,
                    "currency": "CNY",
                    "payer_currency": "CNY",
                },
            }
        return out

    def refund_payload(self, refund: SimRefund) -> dict[str, Any]:
        """The answer to a refund request or query."""
        out: dict[str, Any] = {
            "refund_id": refund.refund_id,
            "out_refund_no": refund.out_refund_no,
            "transaction_id": refund.transaction_id,
            "out_trade_no": refund.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": REFUND_ACCOUNT,
            "create_time": rfc3339(refund.created_s),
            "status": refund.status,
            "amount": {
                "total": refund.total_fen,
                "refund": refund.refund_fen,
                "payer_total": refund.total_fen,
                "payer_refund": refund.refund_fen,
                "currency": "CNY",
            },
        }
        if refund.success_s is not None:
            out["success_time"] = rfc3339(refund.success_s)
        return out

    def refund_resource(self, refund: SimRefund) -> dict[str, Any]:
        """The plaintext of a REFUND.* notification."""
        out: dict[str, Any] = {
            "mchid": self.mchid,
            "out_trade_no": refund.out_trade_no,
            "transaction_id": refund.transaction_id,
            "out_refund_no": refund.out_refund_no,
            "refund_id": refund.refund_id,
            "refund_status": refund.status,
        }
        if refund.success_s is not None:
            out["success_time"] = rfc3339(refund.success_s)
        out["user_received_account"] = REFUND_ACCOUNT
        out["amount"] = {
            "total": refund.total_fen,
            "refund": refund.refund_fen,
            "payer_total": refund.total_fen,
            "payer_refund": refund.refund_fen,
        }
        return out
