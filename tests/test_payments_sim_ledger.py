"""The simulated provider's books (simulators.payment_ledger): pure, clock as an argument."""

from __future__ import annotations

import random
from typing import Any

import pytest

from simulators.payment_ledger import ProviderLedger, Refusal, SimOrder, SimRefund

T0 = 1_795_341_000  # 2026-11-22T17:50:00+08:00


def ledger() -> ProviderLedger:
    return ProviderLedger(
        "1230000109", "wxd678efh567hg6787", rng=random.Random(7), code_url=lambda no: f"pay/{no}"
    )


def order_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "appid": "wxd678efh567hg6787",
        "mchid": "1230000109",
        "description": "天通苑 1号棚 7号插座 充电",
        "out_trade_no": "EBS20261122A0007",
        "time_expire": "2026-11-22T18:00:00+08:00",
        "notify_url": "https://central.example.org/pay/notify/wechatpay",
        "amount": {"total": 300, "currency": "CNY"},
    }
    body.update(changes)
    return body


def refund_body(no: str = "R1", refund: int = 100, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "out_trade_no": "EBS20261122A0007",
        "out_refund_no": no,
        "amount": {"refund": refund, "total": 300, "currency": "CNY"},
    }
    body.update(changes)
    return body


def paid() -> ProviderLedger:
    books = ledger()
    assert isinstance(books.create_order(order_body(), T0), SimOrder)
    assert isinstance(books.pay("EBS20261122A0007", T0 + 60), SimOrder)
    return books


def refusal(result: object) -> str:
    assert isinstance(result, Refusal), result
    return result.code


def test_create_is_idempotent_for_the_same_fields_only() -> None:
    books = ledger()
    first = books.create_order(order_body(), T0)
    again = books.create_order(order_body(), T0 + 5)
    assert isinstance(first, SimOrder) and again is first
    assert first.code_url == "pay/EBS20261122A0007" and len(books.orders) == 1
    other = books.create_order(order_body(amount={"total": 500, "currency": "CNY"}), T0 + 5)
    assert refusal(other) == "OUT_TRADE_NO_USED"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"out_trade_no": "EBS01"}, "PARAM_ERROR"),  # 5 characters
        ({"out_trade_no": "E" * 33}, "PARAM_ERROR"),
        ({"out_trade_no": "EBS 20261122"}, "PARAM_ERROR"),
        ({"amount": {"total": 300.0, "currency": "CNY"}}, "PARAM_ERROR"),
        ({"amount": {"total": "300"}}, "PARAM_ERROR"),
        ({"amount": {"total": 0}}, "PARAM_ERROR"),
        ({"amount": {"total": 300, "currency": "USD"}}, "PARAM_ERROR"),
        ({"time_expire": "2026-11-22T18:00:00"}, "PARAM_ERROR"),
        ({"time_expire": "2026-11-22T17:00:00+08:00"}, "PARAM_ERROR"),  # in the past
        ({"notify_url": "ftp://x"}, "PARAM_ERROR"),
        ({"mchid": "1900000001"}, "MCH_NOT_EXISTS"),
        ({"appid": "wx0000000000000000"}, "APPID_MCHID_NOT_MATCH"),
    ],
)
def test_order_fields_are_validated(changes: dict[str, Any], code: str) -> None:
    assert refusal(ledger().create_order(order_body(**changes), T0)) == code


def test_unpaid_order_closes_at_time_expire_and_default_is_ten_minutes() -> None:
    books = ledger()
    body = order_body()
    del body["time_expire"]
    order = books.create_order(body, T0)
    assert isinstance(order, SimOrder) and order.time_expire_s == T0 + 600
    assert books.expire(T0 + 599) == [] and order.state == "NOTPAY"
    assert books.expire(T0 + 600) == [order]
    assert (order.state, order.closed_by) == ("CLOSED", "expiry")
    assert refusal(books.pay(order.out_trade_no, T0 + 601)) == "ORDER_CLOSED"
    assert refusal(books.create_order(body, T0 + 601)) == "ORDER_CLOSED"


def test_pay_once_then_paid_orders_cannot_be_paid_closed_or_recreated() -> None:
    books = paid()
    order = books.orders["EBS20261122A0007"]
    assert order.state == "SUCCESS" and order.transaction_id is not None
    assert order.resource is not None and order.resource["amount"]["total"] == 300
    assert refusal(books.pay(order.out_trade_no, T0 + 61)) == "ORDERPAID"
    assert refusal(books.close(order.out_trade_no, T0 + 61)) == "ORDERPAID"
    assert refusal(books.create_order(order_body(), T0 + 61)) == "ORDERPAID"
    assert refusal(books.order("EBS-NOPE-1", T0)) == "ORDER_NOT_EXIST"


def test_close_is_idempotent() -> None:
    books = ledger()
    books.create_order(order_body(), T0)
    first = books.close("EBS20261122A0007", T0 + 1)
    again = books.close("EBS20261122A0007", T0 + 2)
    assert isinstance(first, SimOrder) and again is first and first.closed_by == "merchant"


def test_one_out_refund_no_refunds_at_most_once() -> None:
    books = paid()
    first = books.refund(refund_body("R1", 100), T0 + 100)
    again = books.refund(refund_body("R1", 100), T0 + 200)
    assert isinstance(first, tuple) and isinstance(again, tuple)
    assert first[1] is True and again == (first[0], False)
    assert refusal(books.refund(refund_body("R1", 50), T0 + 200)) == "OUT_REFUND_NO_USED"
    assert len(books.refunds) == 1
    assert books.refundable_fen(books.orders["EBS20261122A0007"]) == 200


def test_refunds_never_exceed_the_total() -> None:
    books = paid()
    assert isinstance(books.refund(refund_body("R1", 200), T0 + 100), tuple)
    assert refusal(books.refund(refund_body("R2", 101), T0 + 100)) == "REFUND_AMOUNT_EXCEEDED"
    assert isinstance(books.refund(refund_body("R2", 100), T0 + 100), tuple)
    assert refusal(books.refund(refund_body("R3", 1), T0 + 100)) == "REFUND_AMOUNT_EXCEEDED"


def test_abnormal_refund_frees_its_amount_and_success_marks_the_order() -> None:
    books = paid()
    books.refund(refund_body("R1", 300), T0 + 100)
    refund = books.settle_refund("R1", "ABNORMAL", T0 + 110)
    assert refund.status == "ABNORMAL" and refund.success_s is None
    assert books.orders["EBS20261122A0007"].state == "SUCCESS"
    result = books.refund(refund_body("R2", 300), T0 + 200)
    assert isinstance(result, tuple)
    settled: SimRefund = books.settle_refund("R2", "SUCCESS", T0 + 210)
    assert settled.success_s == T0 + 210
    assert books.orders["EBS20261122A0007"].state == "REFUND"
    assert books.settle_refund("R2", "ABNORMAL", T0 + 300).status == "SUCCESS"  # settled once


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (refund_body(out_trade_no="EBS-UNKNOWN"), "RESOURCE_NOT_EXISTS"),
        (refund_body(amount={"refund": 100, "total": 299}), "PARAM_ERROR"),
        (refund_body(amount={"refund": 100.0, "total": 300}), "PARAM_ERROR"),
        (refund_body("R 1"), "PARAM_ERROR"),
    ],
)
def test_refund_fields_are_validated(body: dict[str, Any], code: str) -> None:
    assert refusal(paid().refund(body, T0 + 100)) == code


def test_refund_of_an_unpaid_order_is_refused() -> None:
    books = ledger()
    books.create_order(order_body(), T0)
    assert refusal(books.refund(refund_body(), T0 + 1)) == "TRADE_NOT_PAID"
