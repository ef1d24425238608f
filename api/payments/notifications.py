"""Verifying and reading provider notifications. Pure: the clock is an argument.

`parse_notification` is the whole check the contract asks for before the
order service looks at an order (steps 1 and 2 of payments-v1):

1. the four `Wechatpay-*` headers are present                  -> `bad_headers`
2. `Wechatpay-Serial` names a known platform key                -> `unknown_serial`
3. `Wechatpay-Timestamp` is within 300 s of `now_s`             -> `stale_timestamp`
4. the signature over `timestamp\\nnonce\\nbody\\n` verifies      -> `bad_signature`
5. the body is the JSON envelope of the contract                -> `bad_body`
6. `event_type` is one this adapter handles                     -> `unknown_event`
7. the resource decrypts with the API v3 key (AES-256-GCM)      -> `decrypt_failed`
8. the plaintext has the fields of its event, for this merchant -> `bad_resource`,
                                                                   `wrong_merchant`

Any failure raises `NotificationRejected(code)`; the caller answers 4xx and
changes nothing. The same signature check (steps 1-4) guards the provider's
responses (`verify_signed_body`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import rsa

from api.payments import crypto, fields
from api.payments.errors import NotificationRejected
from api.payments.models import (
    PaymentNotification,
    RefundNotification,
    RefundStatus,
    TradeState,
)

TIMESTAMP_WINDOW_S: Final = 300

PAYMENT_EVENTS: Final = frozenset({"TRANSACTION.SUCCESS"})
REFUND_EVENTS: Final = {
    "REFUND.SUCCESS": RefundStatus.SUCCESS,
    "REFUND.ABNORMAL": RefundStatus.ABNORMAL,
    "REFUND.CLOSED": RefundStatus.CLOSED,
}
_HEADERS: Final = (
    "wechatpay-serial",
    "wechatpay-timestamp",
    "wechatpay-nonce",
    "wechatpay-signature",
)


def verify_signed_body(
    headers: Mapping[str, str],
    body: bytes,
    now_s: int,
    platform_keys: Mapping[str, rsa.RSAPublicKey],
    window_s: int = TIMESTAMP_WINDOW_S,
) -> None:
    """Check the provider's signature headers over `body`; raise `NotificationRejected`."""
    lower = {name.lower(): value for name, value in headers.items()}
    missing = [name for name in _HEADERS if not lower.get(name)]
    if missing:
        raise NotificationRejected("bad_headers", f"missing {', '.join(missing)}")
    serial = lower["wechatpay-serial"].strip().upper()
    key = platform_keys.get(serial)
    if key is None:
        raise NotificationRejected("unknown_serial", f"no platform key with serial {serial}")
    stamp = lower["wechatpay-timestamp"].strip()
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise NotificationRejected("bad_headers", "Wechatpay-Timestamp is not Unix seconds")
    skew = abs(int(stamp) - now_s)
    if skew > window_s:
        raise NotificationRejected("stale_timestamp", f"{skew} s from now, limit {window_s} s")
    message = crypto.response_message(stamp, lower["wechatpay-nonce"], body)
    if not crypto.verify(key, message, lower["wechatpay-signature"].strip()):
        raise NotificationRejected("bad_signature", f"signature does not verify (serial {serial})")


def parse_notification(
    headers: Mapping[str, str],
    body: bytes,
    now_s: int,
    *,
    platform_keys: Mapping[str, rsa.RSAPublicKey],
    apiv3_key: bytes,
    mchid: str | None = None,
    window_s: int = TIMESTAMP_WINDOW_S,
) -> PaymentNotification | RefundNotification:
    """Verify, decrypt and read one notification; raise `NotificationRejected(code)`.

    `platform_keys` maps upper-case serials to platform public keys. If `mchid`
    is given, a resource for another merchant is refused (`wrong_merchant`).
    """
    verify_signed_body(headers, body, now_s, platform_keys, window_s)
    try:
        envelope = fields.load_object(body)
        notification_id = fields.text(envelope, "id")
        create_time = fields.timestamp(envelope, "create_time")
        event_type = fields.text(envelope, "event_type")
        if envelope.get("resource_type") != "encrypt-resource":
            raise fields.FieldError("resource_type: expected 'encrypt-resource'")
        resource = fields.obj(envelope, "resource")
        if resource.get("algorithm") != crypto.RESOURCE_ALGORITHM:
            raise fields.FieldError(f"resource.algorithm: expected {crypto.RESOURCE_ALGORITHM}")
        ciphertext = fields.text(resource, "ciphertext")
        nonce = fields.text(resource, "nonce")
        associated_data = fields.optional_text(resource, "associated_data")
    except fields.FieldError as err:
        raise NotificationRejected("bad_body", str(err)) from err
    if event_type not in PAYMENT_EVENTS and event_type not in REFUND_EVENTS:
        raise NotificationRejected("unknown_event", f"event_type {event_type!r}")
    try:
        plaintext = crypto.decrypt_resource(apiv3_key, nonce, associated_data, ciphertext)
    except crypto.CryptoError as err:
        raise NotificationRejected("decrypt_failed", str(err)) from err
    try:
        content = fields.load_object(plaintext)
        if event_type in PAYMENT_EVENTS:
            result: PaymentNotification | RefundNotification = _payment(
                notification_id, event_type, create_time, content
            )
        else:
            result = _refund(notification_id, event_type, create_time, content)
    except fields.FieldError as err:
        raise NotificationRejected("bad_resource", str(err)) from err
    if mchid is not None and result.mchid != mchid:
        raise NotificationRejected("wrong_merchant", f"resource for mchid {result.mchid}")
    return result


def _payment(
    notification_id: str, event_type: str, create_time: datetime, content: Mapping[str, Any]
) -> PaymentNotification:
    state = fields.text(content, "trade_state")
    if state != TradeState.SUCCESS.value:
        raise fields.FieldError(f"trade_state {state!r} in a {event_type} notification")
    amount = fields.obj(content, "amount")
    return PaymentNotification(
        notification_id=notification_id,
        event_type=event_type,
        create_time=create_time,
        mchid=fields.text(content, "mchid"),
        appid=fields.optional_text(content, "appid"),
        out_trade_no=fields.text(content, "out_trade_no"),
        transaction_id=fields.text(content, "transaction_id"),
        trade_state=TradeState.SUCCESS,
        amount_total=fields.fen(amount, "total"),
        payer_total=fields.fen(amount, "payer_total"),
        currency=fields.optional_text(amount, "currency", "CNY"),
        success_time=fields.timestamp(content, "success_time"),
    )


def _refund(
    notification_id: str, event_type: str, create_time: datetime, content: Mapping[str, Any]
) -> RefundNotification:
    expected = REFUND_EVENTS[event_type]
    status = fields.text(content, "refund_status")
    if status != expected.value:
        raise fields.FieldError(f"refund_status {status!r} in a {event_type} notification")
    amount = fields.obj(content, "amount")
    success_time = fields.optional_timestamp(content, "success_time")
    if expected is RefundStatus.SUCCESS and success_time is None:
        raise fields.FieldError("success_time: missing in a REFUND.SUCCESS notification")
    return RefundNotification(
        notification_id=notification_id,
        event_type=event_type,
        create_time=create_time,
        mchid=fields.text(content, "mchid"),
        out_trade_no=fields.text(content, "out_trade_no"),
        transaction_id=fields.text(content, "transaction_id"),
        out_refund_no=fields.text(content, "out_refund_no"),
        refund_id=fields.text(content, "refund_id"),
        refund_status=expected,
        amount_total=fields.fen(amount, "total"),
        amount_refund=fields.fen(amount, "refund"),
        payer_total=fields.fen(amount, "payer_total"),
        payer_refund=fields.fen(amount, "payer_refund"),
        success_time=success_time,
        user_received_account=fields.optional_text(content, "user_received_account"),
    )
