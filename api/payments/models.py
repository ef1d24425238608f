"""Values the payment adapter hands to the rest of the API. Money is integer fen."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum


class TradeState(str, Enum):
    """`trade_state` of an order at the provider."""

    SUCCESS = "SUCCESS"  # paid
    REFUND = "REFUND"  # paid, then (partly) refunded
    NOTPAY = "NOTPAY"  # created, not paid yet
    CLOSED = "CLOSED"  # closed by the merchant or expired unpaid
    REVOKED = "REVOKED"  # revoked (card payments)
    USERPAYING = "USERPAYING"  # the payer is entering a password
    PAYERROR = "PAYERROR"  # the payment failed at the bank


class RefundStatus(str, Enum):
    """`status` / `refund_status` of a refund."""

    SUCCESS = "SUCCESS"  # the money is back on the original payment
    CLOSED = "CLOSED"  # the refund was closed without paying out
    PROCESSING = "PROCESSING"  # accepted, not finished: a notification follows
    ABNORMAL = "ABNORMAL"  # failed at the payer's bank; needs staff attention


@dataclass(frozen=True, slots=True)
class OrderQuery:
    """The provider's view of one order (`GET .../out-trade-no/{no}`)."""

    out_trade_no: str
    trade_state: TradeState
    trade_state_desc: str
    amount_fen: int
    transaction_id: str | None  # None until paid
    payer_total: int | None  # fen the payer actually paid; None until paid
    success_time: datetime | None  # None until paid


@dataclass(frozen=True, slots=True)
class RefundResult:
    """The provider's answer to a refund request (or to a refund query)."""

    out_refund_no: str
    refund_id: str
    status: RefundStatus
    refund_fen: int
    total_fen: int
    success_time: datetime | None


@dataclass(frozen=True, slots=True)
class PaymentNotification:
    """A verified, decrypted `TRANSACTION.SUCCESS` notification.

    The provider resends the same notification (same `notification_id`, same
    content) until it gets a 2xx, and may send it twice anyway. The order
    service applies it once: under a lock, look up `out_trade_no`, check that
    `amount_total` equals the order's amount and that the order is still
    payable, apply, record `notification_id`; a repeat changes nothing.
    """

    notification_id: str
    event_type: str  # always "TRANSACTION.SUCCESS"
    create_time: datetime
    mchid: str
    appid: str
    out_trade_no: str
    transaction_id: str
    trade_state: TradeState  # always SUCCESS for this event
    amount_total: int  # fen, the order amount
    payer_total: int  # fen the payer paid (may be below total with coupons)
    currency: str
    success_time: datetime


@dataclass(frozen=True, slots=True)
class RefundNotification:
    """A verified, decrypted `REFUND.SUCCESS` / `REFUND.ABNORMAL` / `REFUND.CLOSED` notification.

    Applied once per `notification_id` (and at most once per `out_refund_no`
    for the money) by the order service, like `PaymentNotification`.
    """

    notification_id: str
    event_type: str  # "REFUND.SUCCESS", "REFUND.ABNORMAL" or "REFUND.CLOSED"
    create_time: datetime
    mchid: str
    out_trade_no: str
    transaction_id: str
    out_refund_no: str
    refund_id: str
    refund_status: RefundStatus
    amount_total: int  # fen, the order amount
    amount_refund: int  # fen refunded by this refund
    payer_total: int
    payer_refund: int
    success_time: datetime | None  # set for SUCCESS only
    user_received_account: str  # where the money went back (the original payment)
