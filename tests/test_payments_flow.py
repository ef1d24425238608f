"""Gateway <-> provider simulator over real HTTP, with a notification receiver.

Both servers are uvicorn on free ports inside the test's event loop. The
provider's delays are divided by `SCALE`, so its 15 s resend takes 75 ms. The
receiver stands in for the API's notification endpoint: it verifies with the
gateway and applies a notification once per id (the real exactly-once logic
belongs to the order service).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from api.payments import (
    BadProviderResponse,
    NotificationRejected,
    OrderNotFound,
    PaymentNotification,
    ProviderRejected,
    RefundNotification,
    RefundStatus,
    TradeState,
    WechatPaySettings,
    WechatPayV3Gateway,
)
from simulators import payment_wire as wire
from simulators.payment_provider import (
    DEFAULT_RESEND_SCHEDULE_S,
    PaymentProviderSimulator,
    write_credentials,
)
from simulators.payment_server import LocalServer

pytest_plugins = ["tests.leaks"]

SCALE = 200.0
ACCOUNT = wire.ProviderAccount.generate(rng=random.Random(11))
Notification = PaymentNotification | RefundNotification


class Clock:
    """Wall time that a test can move forward; shared by provider, gateway and receiver."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Receiver:
    """The API's notify endpoint, reduced: verify, then apply once per notification id."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.gateway: WechatPayV3Gateway | None = None
        self.script: list[int] = []  # answers to give before applying; then 204
        self.statuses: list[int] = []
        self.bodies: list[bytes] = []
        self.rejected: list[str] = []
        self.applied: dict[str, Notification] = {}
        self.duplicates = 0
        self.app = FastAPI()
        self.app.add_api_route("/notify", self.notify, methods=["POST"])

    async def notify(self, request: Request) -> Response:
        body = await request.body()
        self.bodies.append(body)
        status = await self._handle(request, body)
        self.statuses.append(status.status_code)
        return status

    async def _handle(self, request: Request, body: bytes) -> Response:
        assert self.gateway is not None
        try:
            note = self.gateway.parse_notification(request.headers, body, int(self.clock()))
        except NotificationRejected as err:
            self.rejected.append(err.code)
            return JSONResponse(err.problem(), status_code=err.http_status)
        if self.script:
            return Response(status_code=self.script.pop(0))
        if note.notification_id in self.applied:
            self.duplicates += 1
        else:
            self.applied[note.notification_id] = note
        return Response(status_code=204)


@dataclass
class Env:
    sim: PaymentProviderSimulator
    gateway: WechatPayV3Gateway
    receiver: Receiver
    notify_url: str
    clock: Clock

    def expire_in(self, minutes: int = 10) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC) + timedelta(minutes=minutes)

    async def order(self, no: str, fen: int = 300) -> str:
        return await self.gateway.create_order(
            no, "天通苑 1号棚 7号插座 充电", fen, self.expire_in(), self.notify_url
        )

    async def paid(self, no: str, fen: int = 300) -> None:
        await self.order(no, fen)
        self.sim.simulate_payment(no)
        await self.sim.wait_idle()


def gateway_settings(base_url: str, **overrides: object) -> WechatPaySettings:
    assert ACCOUNT.merchant_private_pem is not None
    options: dict[str, object] = {
        "base_url": base_url,
        "mchid": ACCOUNT.mchid,
        "appid": ACCOUNT.appid,
        "merchant_serial": ACCOUNT.merchant_serial,
        "merchant_private_key_pem": ACCOUNT.merchant_private_pem,
        "platform_public_pems": {ACCOUNT.platform_serial: ACCOUNT.platform_public_pem},
        "apiv3_key": ACCOUNT.apiv3_key,
        "retry_backoff_s": 0.01,
    }
    options.update(overrides)
    return WechatPaySettings.from_pem(**options)  # type: ignore[arg-type]





@pytest.fixture
async def env(no_leaks: None) -> AsyncIterator[Env]:
    clock = Clock()
    receiver = Receiver(clock)
    sim = PaymentProviderSimulator(
        ACCOUNT, clock=clock, time_scale=SCALE, refund_delay_s=2.0, seed=5
    )
    server = LocalServer(receiver.app)
    try:
        await asyncio.gather(sim.start(), server.start())
        async with WechatPayV3Gateway(gateway_settings(sim.url), clock=clock) as gateway:
            receiver.gateway = gateway
            yield Env(sim, gateway, receiver, f"{server.url}/notify", clock)
    finally:
        await asyncio.gather(sim.stop(), server.stop())  # each stop takes ~0.2 s: in parallel


async def test_pay_page_payment_is_notified_and_resent_after_a_500(env: Env) -> None:
    env.receiver.script = [500]
    code_url = await env.order("EBS20261122A0007")
    assert code_url.startswith(env.sim.url + "/pay/")
    async with httpx.AsyncClient(follow_redirects=True) as browser:
        page = await browser.get(code_url)
        assert page.status_code == 200
        assert "确认支付 / Pay" in page.text and "¥3.00" in page.text
        confirm = await browser.post(
            f"{code_url}/confirm", headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert confirm.status_code == 200 and "支付成功" in confirm.text
        await env.sim.wait_idle()
        # the same notification, answered 500 then 204, 15 provider-seconds apart
        first, second = env.sim.notification_attempts
        assert (first.status, second.status) == (500, 204)
        assert (first.attempt, second.attempt, second.delay_s) == (0, 1, 15)
        assert 15 / SCALE <= second.elapsed_s - first.elapsed_s < 15 / SCALE + 1.0
        assert env.receiver.bodies[0] == env.receiver.bodies[1]
        [note] = env.receiver.applied.values()
        assert isinstance(note, PaymentNotification)
        assert (note.out_trade_no, note.amount_total, note.trade_state) == (
            "EBS20261122A0007",
            300,
            TradeState.SUCCESS,
        )
        # paying twice is refused and notifies nothing
        assert "已支付" in (await browser.get(code_url)).text
        assert (await browser.post(f"{code_url}/confirm")).status_code == 409
    query = await env.gateway.query_order("EBS20261122A0007")
    assert query.trade_state is TradeState.SUCCESS
    assert query.transaction_id == note.transaction_id and query.payer_total == 300
    assert len(env.sim.notifications) == 1


async def test_duplicate_notifications_are_delivered_and_applied_once(env: Env) -> None:
    env.sim.duplicate_notifications = 2
    await env.paid("EBS20261122A0008")
    attempts = env.sim.notification_attempts
    assert [a.duplicate for a in attempts] == [False, True, True]
    assert {a.notification_id for a in attempts} == {env.sim.notifications[0].notification_id}
    env.sim.resend(env.sim.notifications[0].notification_id)
    await env.sim.wait_idle()
    assert env.receiver.statuses == [204, 204, 204, 204]
    assert len(env.receiver.applied) == 1 and env.receiver.duplicates == 3


async def test_the_resend_schedule_is_the_providers_24_hours(no_leaks: None) -> None:
    receiver = FastAPI()
    receiver.add_api_route("/notify", lambda: Response(status_code=503), methods=["POST"])
    scale = 200_000.0  # 24 h 4 min in 0.43 s
    sim = PaymentProviderSimulator(ACCOUNT, time_scale=scale, seed=1)
    async with LocalServer(receiver) as server, sim:
        async with WechatPayV3Gateway(gateway_settings(sim.url)) as gateway:
            await gateway.create_order(
                "EBS-RESEND-1",
                "test",
                100,
                datetime.now(UTC) + timedelta(minutes=5),
                f"{server.url}/notify",
            )
        sim.simulate_payment("EBS-RESEND-1")
        await sim.wait_idle(timeout_s=5)
    attempts = sim.notification_attempts
    assert [a.delay_s for a in attempts[1:]] == list(DEFAULT_RESEND_SCHEDULE_S)
    assert sum(DEFAULT_RESEND_SCHEDULE_S) == 24 * 3600 + 4 * 60
    assert all(a.status == 503 for a in attempts)
    gaps = [b.elapsed_s - a.elapsed_s for a, b in itertools.pairwise(attempts)]
    assert all(
        gap >= delay / scale for gap, delay in zip(gaps, DEFAULT_RESEND_SCHEDULE_S, strict=True)
    )
    assert sim.notifications[0].gave_up and not sim.notifications[0].delivered


async def test_unpaid_order_is_closed_after_time_expire(env: Env) -> None:
    code_url = await env.gateway.create_order(
        "EBS20261122A0009", "插座 7", 200, env.expire_in(minutes=1), env.notify_url
    )
    assert (await env.gateway.query_order("EBS20261122A0009")).trade_state is TradeState.NOTPAY
    env.clock.offset += 61
    query = await env.gateway.query_order("EBS20261122A0009")
    assert query.trade_state is TradeState.CLOSED and query.transaction_id is None
    async with httpx.AsyncClient() as browser:
        page = await browser.get(code_url)
        assert page.status_code == 410 and "已关闭" in page.text
        assert (await browser.post(f"{code_url}/confirm")).status_code == 409
    await env.gateway.close_order("EBS20261122A0009")  # closing a closed order is fine
    assert env.sim.notifications == [] and env.receiver.bodies == []


async def test_close_before_expiry_and_paid_orders_cannot_close(env: Env) -> None:
    await env.order("EBS20261122A0010")
    await env.gateway.close_order("EBS20261122A0010")
    assert env.sim.orders["EBS20261122A0010"].closed_by == "merchant"
    await env.paid("EBS20261122A0011")
    with pytest.raises(ProviderRejected) as caught:
        await env.gateway.close_order("EBS20261122A0011")
    assert caught.value.provider_code == "ORDERPAID"
    with pytest.raises(OrderNotFound):
        await env.gateway.query_order("EBS-NEVER-MADE")


async def test_refund_is_idempotent_notified_and_never_exceeds_the_total(env: Env) -> None:
    await env.paid("EBS20261122A0012", 300)
    first = await env.gateway.refund("EBS20261122A0012", "EBS20261122A0012-R1", 120, 300)
    again = await env.gateway.refund("EBS20261122A0012", "EBS20261122A0012-R1", 120, 300)
    assert first.status is RefundStatus.PROCESSING
    assert again.refund_id == first.refund_id and len(env.sim.refunds) == 1
    await env.sim.wait_idle()
    refunds = [n for n in env.receiver.applied.values() if isinstance(n, RefundNotification)]
    [note] = refunds
    assert note.event_type == "REFUND.SUCCESS" and note.refund_status is RefundStatus.SUCCESS
    assert (note.out_refund_no, note.refund_id, note.amount_refund, note.amount_total) == (
        "EBS20261122A0012-R1",
        first.refund_id,
        120,
        300,
    )
    assert note.user_received_account == "支付用户零钱"  # the original payment, not a wallet
    settled = await env.gateway.query_refund("EBS20261122A0012-R1")
    assert settled.status is RefundStatus.SUCCESS and settled.success_time is not None
    with pytest.raises(ProviderRejected) as caught:
        await env.gateway.refund("EBS20261122A0012", "EBS20261122A0012-R2", 181, 300)
    assert (caught.value.status, caught.value.provider_code) == (400, "REFUND_AMOUNT_EXCEEDED")
    await env.gateway.refund("EBS20261122A0012", "EBS20261122A0012-R2", 180, 300)
    await env.sim.wait_idle()
    assert sum(r.refund_fen for r in env.sim.refunds.values()) == 300
    query = await env.gateway.query_order("EBS20261122A0012")
    assert query.trade_state is TradeState.REFUND


async def test_lost_answers_are_retried_without_a_second_refund_or_order(env: Env) -> None:
    env.sim.fail_next_requests(1, after_processing=True)
    code_url = await env.order("EBS20261122A0013")
    assert code_url == env.sim.orders["EBS20261122A0013"].code_url
    assert len(env.sim.orders) == 1
    env.sim.simulate_payment("EBS20261122A0013")
    env.sim.fail_next_requests(1, after_processing=True)
    result = await env.gateway.refund("EBS20261122A0013", "EBS20261122A0013-R1", 300, 300)
    assert result.refund_fen == 300 and len(env.sim.refunds) == 1
    refund_calls = [r for r in env.sim.requests if r[1] == "/v3/refund/domestic/refunds"]
    assert [status for _, _, status in refund_calls] == [500, 200]
    await env.sim.wait_idle()


async def test_abnormal_refund_is_notified(env: Env) -> None:
    env.sim.refund_outcome = "ABNORMAL"
    await env.paid("EBS20261122A0014")
    await env.gateway.refund("EBS20261122A0014", "EBS20261122A0014-R1", 300, 300)
    await env.sim.wait_idle()
    [note] = [n for n in env.receiver.applied.values() if isinstance(n, RefundNotification)]
    assert note.event_type == "REFUND.ABNORMAL" and note.success_time is None


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("bad_signature", "bad_signature"),
        ("stale_timestamp", "stale_timestamp"),
        ("tampered_ciphertext", "decrypt_failed"),
        ("unknown_serial", "unknown_serial"),
    ],
)
async def test_bad_notification_changes_nothing_and_the_genuine_resend_applies(
    env: Env, fault: str, code: str
) -> None:
    env.sim.inject_notification_fault(fault)  # type: ignore[arg-type]
    await env.order("EBS20261122A0015")
    env.sim.simulate_payment("EBS20261122A0015")
    for _ in range(200):
        if env.receiver.statuses:
            break
        await asyncio.sleep(0.005)
    assert env.receiver.statuses == [400] and env.receiver.rejected == [code]
    assert env.receiver.applied == {}  # nothing happened
    await env.sim.wait_idle()
    first, resend = env.sim.notification_attempts
    assert (first.fault, first.status, resend.fault, resend.status) == (fault, 400, None, 204)
    assert len(env.receiver.applied) == 1


async def test_garbage_posted_to_the_receiver_is_refused(env: Env) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(env.notify_url, content=b'{"id": "EV-1"}')
    assert answer.status_code == 400 and answer.json() == {"code": "FAIL", "message": "bad_headers"}
    assert env.receiver.applied == {}


async def test_provider_refuses_unsigned_and_wrongly_signed_requests(env: Env) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{env.sim.url}/v3/pay/transactions/native", json={})
    assert answer.status_code == 401 and answer.json()["code"] == "SIGN_ERROR"
    stranger = wire.ProviderAccount.generate()
    assert stranger.merchant_private_pem is not None
    settings = gateway_settings(env.sim.url, merchant_private_key_pem=stranger.merchant_private_pem)
    async with WechatPayV3Gateway(settings, clock=env.clock) as gateway:
        with pytest.raises(ProviderRejected) as caught:
            await gateway.query_order("EBS20261122A0007")
    assert (caught.value.status, caught.value.provider_code) == (401, "SIGN_ERROR")
    assert env.sim.orders == {}


async def test_gateway_refuses_answers_from_an_impostor(env: Env) -> None:
    impostor = wire.ProviderAccount.generate()
    settings = gateway_settings(
        env.sim.url, platform_public_pems={ACCOUNT.platform_serial: impostor.platform_public_pem}
    )
    async with WechatPayV3Gateway(settings, clock=env.clock) as gateway:
        with pytest.raises(BadProviderResponse) as caught:
            await gateway.create_order(
                "EBS20261122A0016", "插座", 100, env.expire_in(), env.notify_url
            )
    assert caught.value.code == "bad_response_signature"


async def test_provider_refuses_float_money_sent_raw(env: Env) -> None:
    body = wire.canonical_json(
        {
            "appid": ACCOUNT.appid,
            "mchid": ACCOUNT.mchid,
            "description": "插座",
            "out_trade_no": "EBS20261122A0017",
            "notify_url": env.notify_url,
            "amount": {"total": 3.0, "currency": "CNY"},
        }
    )
    path = "/v3/pay/transactions/native"
    headers = env.gateway.signed_headers("POST", path, body)
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{env.sim.url}{path}", content=body, headers=headers)
    assert answer.status_code == 400 and answer.json()["code"] == "PARAM_ERROR"
    assert env.sim.orders == {}


async def test_written_credentials_configure_the_gateway(no_leaks: None, tmp_path: Path) -> None:
    async with PaymentProviderSimulator(seed=9) as sim:  # fresh keys
        write_credentials(sim, tmp_path)
        written = json.loads((tmp_path / "provider.json").read_text(encoding="utf-8"))
        settings = WechatPaySettings.from_files(
            base_url=written["base_url"],
            mchid=written["mchid"],
            appid=written["appid"],
            merchant_serial=written["merchant_serial"],
            merchant_private_key_path=tmp_path / "merchant-private.pem",
            platform_public_paths={written["platform_serial"]: tmp_path / "platform-public.pem"},
            apiv3_key=written["apiv3_key"],
        )
        async with WechatPayV3Gateway(settings) as gateway:
            code_url = await gateway.create_order(
                "EBS-CREDS-01",
                "插座",
                100,
                datetime.now(UTC) + timedelta(minutes=5),
                "http://127.0.0.1:9/notify",
            )
            assert code_url == f"{sim.url}/pay/EBS-CREDS-01"
            assert (await gateway.query_order("EBS-CREDS-01")).trade_state is TradeState.NOTPAY
