"""payments-v1 (amended): a notification that claims an applied payment's ids with
another amount or order is refused, recorded and raised to staff; a provider
answer whose signature does not verify is `bad_response_signature`."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from api.models import Alarm, NotificationLog, Order, Payment
from api.payments import WechatPaySettings
from simulators import payment_wire as wire
from tests.test_orders_harness import ACCOUNT, MERCHANT, PayEnv, pay_env

pytest_plugins = ["tests.api_db"]


async def notify(env: PayEnv, event_id: str, resource: dict[str, Any]) -> httpx.Response:
    """POST one TRANSACTION.SUCCESS, signed and sealed exactly as the provider does."""
    body = wire.notification_body(
        event_id=event_id,
        create_time=wire.rfc3339(env.clock.now / 1000),
        event_type="TRANSACTION.SUCCESS",
        summary="支付成功",
        original_type="transaction",
        resource=wire.canonical_json(resource),
        apiv3_key=ACCOUNT.apiv3_key,
        resource_nonce="n0nce0000001",
    )
    headers = wire.signature_headers(
        ACCOUNT.platform_private_key,
        ACCOUNT.platform_serial,
        str(env.clock.now // 1000),
        "conflict-nonce",
        body,
    )
    headers["Content-Type"] = "application/json"
    return await env.http.post("/pay/notify/wechatpay", content=body, headers=headers)


async def staff_login(env: PayEnv) -> dict[str, str]:
    from api.services.accounts import GrantSpec, create_user
    from tests.api_db import USER_PASSWORD

    with env.db() as db, db.begin():
        create_user(db, login="duty", name="duty", password=USER_PASSWORD,
                    grants=[GrantSpec("staff", "demo")], now_ms=env.clock.now)  # fmt: skip
    answer = await env.http.post(
        "/api/v1/auth/password", json={"login": "duty", "password": USER_PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    env.http.cookies.clear()
    return {"Authorization": f"Bearer {answer.json()['token']}"}


async def paid_order(env: PayEnv) -> tuple[str, str, dict[str, Any]]:
    """An order paid through the provider: its number, the event id, the resource."""
    shed = await env.shed()
    created = await env.new_order(shed, 1)
    no = created["out_trade_no"]
    env.sim.simulate_payment(no)
    await env.sim.wait_idle()
    await env.status_becomes(no, "starting")
    (note,) = [n for n in env.sim.notifications if n.out_trade_no == no]
    resource = env.sim.orders[no].resource
    assert resource is not None
    return no, note.notification_id, json.loads(json.dumps(resource))


async def test_a_known_payment_with_another_amount_is_refused_recorded_and_alarmed(
    db_url: str,
) -> None:
    async with pay_env(db_url) as env:
        no, event_id, resource = await paid_order(env)
        # The same notification again is a duplicate: 204, nothing changes.
        assert (await notify(env, event_id, resource)).status_code == 204
        with env.db() as db:
            paid_before = db.get(Order, no)
            assert paid_before is not None
            amount = paid_before.amount_fen

        forged = {**resource, "amount": {**resource["amount"], "total": amount + 100}}
        answer = await notify(env, event_id, forged)
        assert answer.status_code == 400, answer.text
        assert answer.json() == {"code": "FAIL", "message": "payment_conflict"}
        # The provider resends a refused notification: each copy is recorded, one alarm.
        assert (await notify(env, event_id, forged)).status_code == 400

        # The same transaction under a new event id and another amount: a conflict too.
        other = await notify(env, "EV-OTHER-EVENT-ID-0001", forged)
        assert (other.status_code, other.json()["message"]) == (400, "payment_conflict")

        with env.db() as db:
            order = db.get(Order, no)
            assert order is not None
            assert (order.status, order.paid_fen) == ("starting", amount)  # nothing moved
            assert len(db.scalars(select(Payment)).all()) == 1
            logged = db.scalars(select(NotificationLog)).all()
            assert [n.code for n in logged] == ["payment_conflict"] * 3
            assert {n.out_trade_no for n in logged} == {no}
            assert f"amount.total {amount + 100} != {amount}" in logged[0].detail
            alarms = db.scalars(select(Alarm).where(Alarm.kind == "payment_conflict")).all()
            assert len(alarms) == 2 and all(a.active and a.port == 1 for a in alarms)

        # Staff see the record and the alarm.
        refused = await env.http.get("/api/v1/admin/notifications/refused", headers=env.admin)
        assert [n["code"] for n in refused.json()] == ["payment_conflict"] * 3
        board_alarms = await env.http.get("/api/v1/staff/alarms", headers=await staff_login(env))
        assert board_alarms.status_code == 200, board_alarms.text
        kinds = [(a["kind"], a["source"]) for a in board_alarms.json()]
        assert kinds.count(("payment_conflict", "api")) == 2, board_alarms.text


async def test_a_known_transaction_for_another_order_is_a_conflict(db_url: str) -> None:
    async with pay_env(db_url) as env:
        no, _event_id, resource = await paid_order(env)
        shed = await env.shed()
        second = await env.new_order(shed, 2)
        moved = {**resource, "out_trade_no": second["out_trade_no"]}
        answer = await notify(env, "EV-MOVED-0001", moved)
        assert (answer.status_code, answer.json()["message"]) == (400, "payment_conflict")
        with env.db() as db:
            order = db.get(Order, second["out_trade_no"])
            assert order is not None and (order.status, order.paid_fen) == ("created", 0)
            (alarm,) = db.scalars(select(Alarm).where(Alarm.kind == "payment_conflict")).all()
            first = db.get(Order, no)
            assert first is not None and alarm.shed_id == first.shed_id  # the payment's shed


def _stranger_key_settings() -> WechatPaySettings:
    """Our merchant, but with a platform key that is not the provider's."""
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = stranger.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return WechatPaySettings.from_pem(
        base_url=MERCHANT.base_url,
        mchid=MERCHANT.mchid,
        appid=MERCHANT.appid,
        merchant_serial=MERCHANT.merchant_serial,
        merchant_private_key_pem=ACCOUNT.merchant_private_pem or b"",
        platform_public_pems={ACCOUNT.platform_serial: pem},
        apiv3_key=ACCOUNT.apiv3_key,
        retry_backoff_s=0.0,
    )


async def test_a_badly_signed_provider_answer_is_named_so(db_url: str) -> None:
    async with pay_env(db_url, merchant=_stranger_key_settings()) as env:
        shed = await env.shed()
        answer = await env.order(shed, 1)
        assert answer.status_code == 502, answer.text
        assert answer.json()["code"] == "bad_response_signature"
        assert "cannot be reached" not in answer.json()["message"]
        with env.db() as db:
            (order,) = db.scalars(select(Order)).all()
            assert (order.status, order.problem) == ("expired", "create_failed")  # socket free
    assert dataclasses.is_dataclass(MERCHANT)
