"""Errors of the payment adapter. Each carries a stable `code`.

The code is meant for logs, metrics and HTTP problem responses; `detail` is for
people and may change. Library errors (httpx, cryptography, json) never leave
the adapter: every boundary translates them (`raise ... from err`).

- `NotificationRejected` (codes: see `RejectCode`): a notification failed
  verification; answer 4xx and change nothing.
- `InvalidRequest` (`invalid_request`): the caller asked for something the
  contract forbids; nothing was sent.
- `ProviderUnavailable` (`provider_unavailable`): no answer, a timeout or a 5xx
  after every attempt; retry later with the same ids.
- `ProviderRejected` (`provider_rejected`): the provider answered 4xx;
  `provider_code` says why (e.g. `ORDERPAID`, `REFUND_AMOUNT_EXCEEDED`).
- `OrderNotFound` (`order_not_found`): the provider does not know the order.
- `BadProviderResponse` (`bad_response`, `bad_response_signature`): a 2xx
  answer we cannot read or whose signature does not verify.
"""

from __future__ import annotations

from typing import Literal

RejectCode = Literal[
    "bad_headers",  # a Wechatpay-* header is missing or malformed
    "unknown_serial",  # no platform key with the serial in Wechatpay-Serial
    "stale_timestamp",  # Wechatpay-Timestamp more than 300 s from now
    "bad_signature",  # the RSA signature over timestamp\nnonce\nbody\n does not verify
    "bad_body",  # the body is not the contract's JSON envelope
    "unknown_event",  # an event_type this adapter does not handle
    "decrypt_failed",  # AES-256-GCM refused the resource (tampered, wrong key or nonce)
    "bad_resource",  # the decrypted resource is not what the contract says
    "wrong_merchant",  # the resource is for another merchant id
]

REJECT_CODES: tuple[RejectCode, ...] = (
    "bad_headers",
    "unknown_serial",
    "stale_timestamp",
    "bad_signature",
    "bad_body",
    "unknown_event",
    "decrypt_failed",
    "bad_resource",
    "wrong_merchant",
)

ResponseCode = Literal["bad_response", "bad_response_signature"]


class PaymentError(Exception):
    """Base class. `code` is stable; `detail` is a human explanation."""

    code: str

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


class NotificationRejected(PaymentError):
    """A provider notification that must be answered with a 4xx and otherwise ignored."""

    code: RejectCode
    http_status = 400

    def __init__(self, code: RejectCode, detail: str = "") -> None:
        super().__init__(code, detail)

    def problem(self) -> dict[str, str]:
        """The JSON answer for the provider, in its own error shape."""
        return {"code": "FAIL", "message": self.code}


class InvalidRequest(PaymentError):
    """Raised before any I/O when an argument breaks the contract."""

    def __init__(self, detail: str) -> None:
        super().__init__("invalid_request", detail)


class ProviderUnavailable(PaymentError):
    """Transport failure, timeout or 5xx after all attempts. Safe to retry with the same ids."""

    def __init__(self, detail: str) -> None:
        super().__init__("provider_unavailable", detail)


class ProviderRejected(PaymentError):
    """The provider answered 4xx. `provider_code` is its own code (e.g. `ORDERPAID`)."""

    def __init__(
        self,
        status: int,
        provider_code: str,
        provider_message: str = "",
        *,
        code: str = "provider_rejected",
    ) -> None:
        super().__init__(code, f"HTTP {status} {provider_code}: {provider_message}")
        self.status = status
        self.provider_code = provider_code
        self.provider_message = provider_message


class OrderNotFound(ProviderRejected):
    """The provider has no order with that `out_trade_no` (`ORDER_NOT_EXIST`)."""

    def __init__(self, status: int, provider_code: str, provider_message: str = "") -> None:
        super().__init__(status, provider_code, provider_message, code="order_not_found")


class BadProviderResponse(PaymentError):
    """A 2xx answer that failed its signature check or cannot be read."""

    code: ResponseCode

    def __init__(self, code: ResponseCode, detail: str = "") -> None:
        super().__init__(code, detail)
