"""Verifying and decrypting notifications (api.payments.notifications) with a fixed clock.

The vector timestamps are fixed, so the clock is set to the vector's timestamp.
Every refusal is a `NotificationRejected` with a stable code; nothing else.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from api.payments import (
    NotificationRejected,
    PaymentNotification,
    RefundNotification,
    RefundStatus,
    TradeState,
    WechatPaySettings,
    WechatPayV3Gateway,
    crypto,
)
from api.payments.errors import REJECT_CODES
from api.payments.notifications import parse_notification

FIXTURES = Path(__file__).parent / "fixtures" / "contracts"
VECTORS: dict[str, Any] = json.loads((FIXTURES / "payments-v1.json").read_text(encoding="utf-8"))
NOTE = VECTORS["notification"]
NOW = int(NOTE["headers"]["Wechatpay-Timestamp"])
KEY = crypto.apiv3_key_bytes(VECTORS["apiv3_key"])
PLATFORM = {
    VECTORS["platform_serial"]: crypto.load_public_key(
        (FIXTURES / "payments-platform-public.pem").read_bytes()
    )
}
PLATFORM_PRIVATE = crypto.load_private_key(
    (FIXTURES / "payments-platform-private.pem").read_bytes()
)
CST = timezone(timedelta(hours=8))

# What each must_refuse vector is refused for. A vector added later without a
# code here fails `test_every_must_refuse_vector_is_refused_with_its_code`.
REFUSE_CODES = {
    "tampered ciphertext, validly re-signed (decryption must fail)": "decrypt_failed",
    "body changed after signing (signature must fail)": "bad_signature",
    "signed by an unknown key": "bad_signature",
    "unknown certificate serial": "unknown_serial",
}


def parse(headers: dict[str, str], body: bytes, now_s: int = NOW) -> object:
    return parse_notification(
        headers, body, now_s, platform_keys=PLATFORM, apiv3_key=KEY, mchid="1230000109"
    )


def rejected(headers: dict[str, str], body: bytes, now_s: int = NOW) -> str:
    with pytest.raises(NotificationRejected) as caught:
        parse(headers, body, now_s)
    return caught.value.code


def sealed(
    content: dict[str, Any] | bytes,
    *,
    event_type: str = "TRANSACTION.SUCCESS",
    original_type: str = "transaction",
    envelope: dict[str, Any] | None = None,
    timestamp: int = NOW,
) -> tuple[dict[str, str], bytes]:
    """A notification signed with the vector platform key, its resource encrypted."""
    plain = content if isinstance(content, bytes) else json.dumps(content).encode()
    body_obj: dict[str, Any] = {
        "id": "EV-TEST-1",
        "create_time": "2026-11-22T18:01:31+08:00",
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": "test",
        "resource": {
            "original_type": original_type,
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": crypto.encrypt_resource(KEY, "0123456789ab", original_type, plain),
            "associated_data": original_type,
            "nonce": "0123456789ab",
        },
    }
    body_obj.update(envelope or {})
    body = json.dumps(body_obj, ensure_ascii=False).encode()
    nonce = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"
    signature = crypto.sign(PLATFORM_PRIVATE, crypto.response_message(str(timestamp), nonce, body))
    headers = {
        "Wechatpay-Signature": signature,
        "Wechatpay-Timestamp": str(timestamp),
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Serial": VECTORS["platform_serial"],
    }
    return headers, body


def payment_content(**changes: Any) -> dict[str, Any]:
    content: dict[str, Any] = json.loads(json.dumps(NOTE["decrypted_resource"]))
    content.update(changes)
    return content


REFUND_CONTENT: dict[str, Any] = {
    "mchid": "1230000109",
    "out_trade_no": "EBS20261122A0007",
    "transaction_id": "4200000000202611220000000007",
    "out_refund_no": "EBS20261122A0007-R1",
    "refund_id": "50300000002026112200000000001",
    "refund_status": "SUCCESS",
    "success_time": "2026-11-22T20:30:00+08:00",
    "user_received_account": "支付用户零钱",
    "amount": {"total": 300, "refund": 120, "payer_total": 300, "payer_refund": 120},
}


def test_vector_notification_verifies_and_decrypts_to_its_content() -> None:
    note = parse(NOTE["headers"], NOTE["body"].encode())
    expected = NOTE["decrypted_resource"]
    assert note == PaymentNotification(
        notification_id="EV-2018022511223320873",
        event_type="TRANSACTION.SUCCESS",
        create_time=datetime(2026, 11, 22, 20, 1, 31, tzinfo=CST),
        mchid=expected["mchid"],
        appid=expected["appid"],
        out_trade_no=expected["out_trade_no"],
        transaction_id=expected["transaction_id"],
        trade_state=TradeState.SUCCESS,
        amount_total=expected["amount"]["total"],
        payer_total=expected["amount"]["payer_total"],
        currency="CNY",
        success_time=datetime(2026, 11, 22, 20, 1, 30, tzinfo=CST),
    )
    assert type(note.amount_total) is int and type(note.payer_total) is int


def test_every_must_refuse_vector_is_refused_with_its_code() -> None:
    assert {case["why"] for case in VECTORS["must_refuse"]} == set(REFUSE_CODES)
    for case in VECTORS["must_refuse"]:
        assert rejected(case["headers"], case["body"].encode()) == REFUSE_CODES[case["why"]], case


@pytest.mark.parametrize(
    ("skew", "accepted"), [(301, False), (-301, False), (300, True), (-300, True)]
)
def test_timestamp_window_is_300_seconds(skew: int, accepted: bool) -> None:
    body = NOTE["body"].encode()
    if accepted:
        assert isinstance(parse(NOTE["headers"], body, NOW + skew), PaymentNotification)
    else:
        assert rejected(NOTE["headers"], body, NOW + skew) == "stale_timestamp"


def test_header_names_are_case_insensitive() -> None:
    lower = {name.lower(): value for name, value in NOTE["headers"].items()}
    assert isinstance(parse(lower, NOTE["body"].encode()), PaymentNotification)


@pytest.mark.parametrize(
    "header", ["Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Serial"]
)
def test_missing_header_is_bad_headers(header: str) -> None:
    headers = {k: v for k, v in NOTE["headers"].items() if k != header}
    assert rejected(headers, NOTE["body"].encode()) == "bad_headers"


def test_timestamp_that_is_not_unix_seconds_is_bad_headers() -> None:
    headers = dict(NOTE["headers"], **{"Wechatpay-Timestamp": "2026-11-22T18:01:31"})
    assert rejected(headers, NOTE["body"].encode()) == "bad_headers"


def test_body_that_is_not_the_envelope_is_bad_body() -> None:
    headers, body = sealed(payment_content(), envelope={"resource_type": "plain"})
    assert rejected(headers, body) == "bad_body"
    headers, body = sealed(payment_content(), envelope={"resource": "nope"})
    assert rejected(headers, body) == "bad_body"
    resource = json.loads(sealed(payment_content())[1])["resource"]
    headers, body = sealed(
        payment_content(), envelope={"resource": dict(resource, algorithm="AEAD_SM4_GCM")}
    )
    assert rejected(headers, body) == "bad_body"


def test_unknown_event_type_is_refused_before_decrypting() -> None:
    headers, body = sealed(payment_content(), event_type="TRANSACTION.MAYBE")
    assert rejected(headers, body) == "unknown_event"


@pytest.mark.parametrize(
    "content",
    [
        payment_content(amount={"total": 300.0, "payer_total": 300}),  # float money
        payment_content(amount={"total": "300", "payer_total": 300}),
        payment_content(amount={"total": True, "payer_total": 300}),
        payment_content(trade_state="NOTPAY"),  # not a success in a success event
        payment_content(success_time="yesterday"),
        payment_content(success_time="2026-11-22T20:01:30"),  # no offset
        {k: v for k, v in payment_content().items() if k != "out_trade_no"},
        b"not json",
    ],
)
def test_resource_content_that_breaks_the_contract_is_bad_resource(
    content: dict[str, Any] | bytes,
) -> None:
    headers, body = sealed(content)
    assert rejected(headers, body) == "bad_resource"


def test_resource_for_another_merchant_is_refused() -> None:
    headers, body = sealed(payment_content(mchid="1900000001"))
    assert rejected(headers, body) == "wrong_merchant"


def test_refund_notification_is_read() -> None:
    headers, body = sealed(REFUND_CONTENT, event_type="REFUND.SUCCESS", original_type="refund")
    note = parse(headers, body)
    assert isinstance(note, RefundNotification)
    assert note.refund_status is RefundStatus.SUCCESS
    assert (note.out_refund_no, note.amount_refund, note.amount_total) == (
        "EBS20261122A0007-R1",
        120,
        300,
    )
    assert note.success_time == datetime(2026, 11, 22, 20, 30, tzinfo=CST)
    assert note.user_received_account == "支付用户零钱"


def test_refund_event_and_status_must_agree() -> None:
    headers, body = sealed(REFUND_CONTENT, event_type="REFUND.ABNORMAL", original_type="refund")
    assert rejected(headers, body) == "bad_resource"
    abnormal = dict(REFUND_CONTENT, refund_status="ABNORMAL")
    del abnormal["success_time"]
    headers, body = sealed(abnormal, event_type="REFUND.ABNORMAL", original_type="refund")
    note = parse(headers, body)
    assert isinstance(note, RefundNotification)
    assert note.refund_status is RefundStatus.ABNORMAL and note.success_time is None


def test_gateway_parse_notification_uses_its_settings() -> None:
    settings = WechatPaySettings.from_pem(
        base_url="http://provider.invalid",
        mchid="1230000109",
        appid="wxd678efh567hg6787",
        merchant_serial=VECTORS["merchant_serial"],
        merchant_private_key_pem=(FIXTURES / "payments-merchant-private.pem").read_bytes(),
        platform_public_pems={
            VECTORS["platform_serial"].lower(): (
                FIXTURES / "payments-platform-public.pem"
            ).read_bytes()
        },
        apiv3_key=VECTORS["apiv3_key"],
    )
    gateway = WechatPayV3Gateway(settings)
    note = gateway.parse_notification(NOTE["headers"], NOTE["body"].encode(), NOW)
    assert isinstance(note, PaymentNotification) and note.out_trade_no == "EBS20261122A0007"
    with pytest.raises(NotificationRejected) as caught:
        gateway.parse_notification(NOTE["headers"], NOTE["body"].encode(), NOW + 301)
    assert caught.value.code == "stale_timestamp"
    assert caught.value.code in REJECT_CODES
    assert caught.value.problem() == {"code": "FAIL", "message": "stale_timestamp"}
