"""`PaymentGateway`: what the rest of the API needs from a payment provider.

One adapter per provider scheme implements it (`WechatPayV3Gateway` speaks
payments-v1). The order service depends on this Protocol only, so tests can
hand it a fake and a second provider needs no change outside its adapter.

Every method is safe to retry with the same ids: creating the same
`out_trade_no` with the same fields gives the same `code_url`, closing a closed
order is a no-op, and one `out_refund_no` refunds at most once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from api.payments.models import OrderQuery, PaymentNotification, RefundNotification, RefundResult


class PaymentGateway(Protocol):
    async def create_order(
        self,
        out_trade_no: str,
        description: str,
        amount_fen: int,
        time_expire: datetime,
        notify_url: str,
    ) -> str:
        """Create a Native order; return the `code_url` the resident's phone opens."""
        ...

    async def query_order(self, out_trade_no: str) -> OrderQuery:
        """The provider's state of an order (raises `OrderNotFound` if it has none)."""
        ...

    async def close_order(self, out_trade_no: str) -> None:
        """Close an unpaid order so it can no longer be paid."""
        ...

    async def refund(
        self, out_trade_no: str, out_refund_no: str, refund_fen: int, total_fen: int
    ) -> RefundResult:
        """Refund to the original payment. One `out_refund_no` refunds at most once."""
        ...

    def parse_notification(
        self, headers: Mapping[str, str], body: bytes, now_s: int
    ) -> PaymentNotification | RefundNotification:
        """Verify and decrypt a notification, or raise `NotificationRejected(code)`."""
        ...
