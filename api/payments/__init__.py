"""Payments: the central API's adapter to payment providers (contract payments-v1).

- `gateway.PaymentGateway`: the Protocol the rest of the API uses.
- `wechatpay.WechatPayV3Gateway`: the adapter speaking payments-v1 over HTTP.
- `notifications.parse_notification`: verify and decrypt a notification (pure).
- `crypto`: the signature and encryption scheme (pure).
- `models`: the values (`OrderQuery`, `RefundResult`, `PaymentNotification`,
  `RefundNotification`); `errors`: typed errors with stable codes.

Applying a notification exactly once is the order service's job; see
docs/payments.md.
"""

from api.payments.errors import (
    BadProviderResponse,
    InvalidRequest,
    NotificationRejected,
    OrderNotFound,
    PaymentError,
    ProviderRejected,
    ProviderUnavailable,
    RejectCode,
)
from api.payments.gateway import PaymentGateway
from api.payments.models import (
    OrderQuery,
    PaymentNotification,
    RefundNotification,
    RefundResult,
    RefundStatus,
    TradeState,
)
from api.payments.settings import WechatPaySettings
from api.payments.wechatpay import WechatPayV3Gateway

__all__ = [
    "BadProviderResponse",
    "InvalidRequest",
    "NotificationRejected",
    "OrderNotFound",
    "OrderQuery",
    "PaymentError",
    "PaymentGateway",
    "PaymentNotification",
    "ProviderRejected",
    "ProviderUnavailable",
    "RefundNotification",
    "RefundResult",
    "RefundStatus",
    "RejectCode",
    "TradeState",
    "WechatPaySettings",
    "WechatPayV3Gateway",
]
