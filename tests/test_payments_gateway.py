"""WechatPayV3Gateway over an in-memory transport: exact requests, response checks, errors.

The provider's side of these exchanges is played with `simulators.payment_wire`
(the simulator's own implementation, checked against the vectors elsewhere),
so the gateway's requests are also checked by an independent verifier.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.payments import (
    BadProviderResponse,
    InvalidRequest,
    OrderNotFound,
    ProviderRejected,
    ProviderUnavailable,
    RefundStatus,
    TradeState,
    WechatPaySettings,
    WechatPayV3Gateway,
)
from simulators import payment_wire as wire

FIXTURES = Path(__file__).parent / "fixtures" / "contracts"
VECTORS: dict[str, Any] = json.loads((FIXTURES / "payments-v1.json").read_text(encoding="utf-8"))
ORDER = VECTORS["order_request"]
ORDER_BODY = json.loads(ORDER["body"])
T_ORDER = int(ORDER["timestamp"])
PROVIDER = wire.ProviderAccount.from_vectors(FIXTURES)
BASE = "https://provider.test"
CST = timezone(timedelta(hours=8))

Handler = Callable[[httpx.Request], httpx.Response]


def settings(**overrides: Any) -> WechatPaySettings:
    options: dict[str, Any] = {
        "base_url": BASE,
        "mchid": "1230000109",
        "appid": "wxd678efh567hg6787",
        "merchant_serial": VECTORS["merchant_serial"],
        "merchant_private_key_pem": (FIXTURES / "payments-merchant-private.pem").read_bytes(),
        "platform_public_pems": {
            VECTORS["platform_serial"]: (FIXTURES / "payments-platform-public.pem").read_bytes()
        },
        "apiv3_key": VECTORS["apiv3_key"],
        "retry_backoff_s": 0.25,
    }
    options.update(overrides)
    return WechatPaySettings.from_pem(**options)


def signed(status: int, payload: Any = None, *, at: int = T_ORDER) -> httpx.Response:
    """An answer signed by the provider (vector platform key)."""
    body = b"" if payload is None else wire.canonical_json(payload)
    headers = wire.signature_headers(
        PROVIDER.platform_private_key, PROVIDER.platform_serial, str(at), "A" * 32, body
    )
    return httpx.Response(status, content=body, headers=headers)


class Recorder:
    """Plays the provider: checks each request's signature, answers from a script."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        refused = wire.check_merchant_request(
            PROVIDER,
            request.method,
            request.url.raw_path.decode(),
            request.content,
            request.headers.get("authorization"),
            T_ORDER,
        )
        assert refused is None, refused
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Gateway:
    def __init__(self, recorder: Recorder, **overrides: Any) -> None:
        self.sleeps: list[float] = []
        nonces = iter([ORDER["nonce"], *(f"{n:032X}" for n in range(1, 100))])
        self.client = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
        self.gateway = WechatPayV3Gateway(
            settings(**overrides),
            client=self.client,
            clock=lambda: float(T_ORDER),
            nonce=lambda: next(nonces),
            sleep=self._sleep,
        )

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


@pytest.fixture
def make() -> Iterator[Callable[..., tuple[WechatPayV3Gateway, Gateway]]]:
    made: list[Gateway] = []

    def build(recorder: Recorder, **overrides: Any) -> tuple[WechatPayV3Gateway, Gateway]:
        made.append(Gateway(recorder, **overrides))
        return made[-1].gateway, made[-1]

    yield build
    for g in made:
        assert not g.client.is_closed  # an injected client belongs to the caller


async def test_order_request_is_the_vector_byte_for_byte(make: Callable[..., Any]) -> None:
    recorder = Recorder(signed(200, {"code_url": "weixin://wxpay/bizpayurl?pr=p4lpSuKzz"}))
    gateway, _ = make(recorder)
    code_url = await gateway.create_order(
        ORDER_BODY["out_trade_no"],
        ORDER_BODY["description"],
        ORDER_BODY["amount"]["total"],
        datetime.fromisoformat(ORDER_BODY["time_expire"]),
        ORDER_BODY["notify_url"],
    )
    assert code_url == "weixin://wxpay/bizpayurl?pr=p4lpSuKzz"
    [request] = recorder.requests
    assert request.method == ORDER["method"]
    assert request.url.raw_path.decode() == ORDER["path"]
    assert request.content == ORDER["body"].encode()
    assert request.headers["Authorization"] == ORDER["authorization"]
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"


async def test_query_signs_the_path_with_its_query_and_an_empty_body(
    make: Callable[..., Any],
) -> None:
    paid = {
        "appid": "wxd678efh567hg6787",
        "mchid": "1230000109",
        "out_trade_no": "EBS20261122A0007",
        "transaction_id": "4200000000202611220000000007",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "success_time": "2026-11-22T20:01:30+08:00",
        "amount": {"total": 300, "payer_total": 300, "currency": "CNY"},
    }
    recorder = Recorder(signed(200, paid))
    gateway, _ = make(recorder)
    result = await gateway.query_order("EBS20261122A0007")
    [request] = recorder.requests
    assert (
        request.url.raw_path
        == b"/v3/pay/transactions/out-trade-no/EBS20261122A0007?mchid=1230000109"
    )
    assert request.content == b""
    assert result.trade_state is TradeState.SUCCESS
    assert (result.amount_fen, result.payer_total) == (300, 300)
    assert result.transaction_id == "4200000000202611220000000007"
    assert result.success_time == datetime(2026, 11, 22, 20, 1, 30, tzinfo=CST)


async def test_unpaid_order_query_has_no_payment_fields(make: Callable[..., Any]) -> None:
    notpay = {
        "out_trade_no": "EBS20261122A0008",
        "trade_state": "NOTPAY",
        "trade_state_desc": "未支付",
        "amount": {"total": 300, "currency": "CNY"},
    }
    gateway, _ = make(Recorder(signed(200, notpay)))
    result = await gateway.query_order("EBS20261122A0008")
    assert result.trade_state is TradeState.NOTPAY
    assert result.transaction_id is None and result.payer_total is None


async def test_close_and_refund_bodies_are_the_contracts(make: Callable[..., Any]) -> None:
    refund = {
        "refund_id": "50300000002026112200000000001",
        "out_refund_no": "EBS20261122A0007-R1",
        "status": "PROCESSING",
        "amount": {"total": 300, "refund": 120, "currency": "CNY"},
    }
    recorder = Recorder(signed(204), signed(200, refund))
    gateway, _ = make(recorder)
    await gateway.close_order("EBS20261122A0008")
    result = await gateway.refund("EBS20261122A0007", "EBS20261122A0007-R1", 120, 300)
    close, refund_request = recorder.requests
    assert close.url.raw_path == b"/v3/pay/transactions/out-trade-no/EBS20261122A0008/close"
    assert close.content == b'{"mchid":"1230000109"}'
    assert refund_request.url.raw_path == b"/v3/refund/domestic/refunds"
    assert json.loads(refund_request.content) == {
        "out_trade_no": "EBS20261122A0007",
        "out_refund_no": "EBS20261122A0007-R1",
        "amount": {"refund": 120, "total": 300, "currency": "CNY"},
    }
    assert result.status is RefundStatus.PROCESSING
    assert (result.refund_id, result.refund_fen, result.total_fen) == (
        "50300000002026112200000000001",
        120,
        300,
    )


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, json={"code_url": "weixin://forged"}),  # unsigned
        signed(200, {"code_url": "weixin://stale"}, at=T_ORDER - 301),
    ],
)
async def test_unverifiable_answer_is_bad_response_signature(
    make: Callable[..., Any], answer: httpx.Response
) -> None:
    gateway, _ = make(Recorder(answer))
    with pytest.raises(BadProviderResponse) as caught:
        await gateway.close_order("EBS20261122A0008")
    assert caught.value.code == "bad_response_signature"


async def test_answer_signed_by_another_key_is_refused(make: Callable[..., Any]) -> None:
    other = wire.ProviderAccount.generate()
    body = b'{"code_url":"weixin://evil"}'
    headers = wire.signature_headers(
        other.platform_private_key, PROVIDER.platform_serial, str(T_ORDER), "B" * 32, body
    )
    gateway, _ = make(Recorder(httpx.Response(200, content=body, headers=headers)))
    with pytest.raises(BadProviderResponse) as caught:
        await gateway.query_order("EBS20261122A0007")
    assert caught.value.code == "bad_response_signature"


async def test_response_checks_can_be_switched_off(make: Callable[..., Any]) -> None:
    gateway, _ = make(Recorder(httpx.Response(204)), verify_responses=False)
    await gateway.close_order("EBS20261122A0008")


async def test_signed_answer_that_cannot_be_read_is_bad_response(
    make: Callable[..., Any],
) -> None:
    gateway, _ = make(Recorder(signed(200, {"trade_state": "PAID??"})))
    with pytest.raises(BadProviderResponse) as caught:
        await gateway.query_order("EBS20261122A0007")
    assert caught.value.code == "bad_response"


async def test_provider_refusals_are_typed_and_not_retried(make: Callable[..., Any]) -> None:
    recorder = Recorder(
        signed(400, {"code": "ORDERPAID", "message": "already paid"}),
        signed(404, {"code": "ORDER_NOT_EXIST", "message": "no such order"}),
    )
    gateway, g = make(recorder)
    with pytest.raises(ProviderRejected) as caught:
        await gateway.close_order("EBS20261122A0007")
    assert (caught.value.code, caught.value.status, caught.value.provider_code) == (
        "provider_rejected",
        400,
        "ORDERPAID",
    )
    with pytest.raises(OrderNotFound) as missing:
        await gateway.query_order("EBS20261122A0099")
    assert missing.value.code == "order_not_found"
    assert len(recorder.requests) == 2 and g.sleeps == []


async def test_transient_failures_are_retried_with_fresh_signatures(
    make: Callable[..., Any],
) -> None:
    refund = {
        "refund_id": "R-ID",
        "out_refund_no": "EBS-R1",
        "status": "SUCCESS",
        "success_time": "2026-11-22T20:30:00+08:00",
        "amount": {"total": 300, "refund": 300},
    }
    recorder = Recorder(
        httpx.ConnectError("connection refused"), signed(503, None), signed(200, refund)
    )
    gateway, g = make(recorder)
    result = await gateway.refund("EBS20261122A0007", "EBS-R1", 300, 300)
    assert result.status is RefundStatus.SUCCESS
    assert g.sleeps == [0.25, 0.5]
    bodies = {r.content for r in recorder.requests}
    nonces = {r.headers["Authorization"].split('nonce_str="')[1][:32] for r in recorder.requests}
    assert len(bodies) == 1 and len(nonces) == 3  # same refund, signed afresh each time


async def test_provider_down_is_provider_unavailable(make: Callable[..., Any]) -> None:
    recorder = Recorder(*(httpx.ReadTimeout("slow") for _ in range(3)))
    gateway, g = make(recorder)
    with pytest.raises(ProviderUnavailable) as caught:
        await gateway.query_order("EBS20261122A0007")
    assert caught.value.code == "provider_unavailable"
    assert len(recorder.requests) == 3 and len(g.sleeps) == 2


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("create_order", ("short", "d", 300, datetime(2026, 11, 22, 20, tzinfo=CST), "https://x")),
        (
            "create_order",
            ("EBS/../../x", "d", 300, datetime(2026, 11, 22, 20, tzinfo=CST), "https://x"),
        ),
        (
            "create_order",
            ("EBS0000001", "d", 3.0, datetime(2026, 11, 22, 20, tzinfo=CST), "https://x"),
        ),
        (
            "create_order",
            ("EBS0000001", "d", 0, datetime(2026, 11, 22, 20, tzinfo=CST), "https://x"),
        ),
        ("create_order", ("EBS0000001", "d", 300, datetime(2026, 11, 22, 20), "https://x")),
        (
            "create_order",
            ("EBS0000001", "", 300, datetime(2026, 11, 22, 20, tzinfo=CST), "https://x"),
        ),
        (
            "create_order",
            ("EBS0000001", "d", 300, datetime(2026, 11, 22, 20, tzinfo=CST), "ftp://x"),
        ),
        ("query_order", ("EBS 0001",)),
        ("close_order", ("EBS?0001",)),
        ("refund", ("EBS0000001", "R1", 301, 300)),
        ("refund", ("EBS0000001", "R1", 0, 300)),
        ("refund", ("EBS0000001", "R 1", 100, 300)),
        ("refund", ("EBS0000001", "R1", 1.5, 300)),
    ],
)
async def test_arguments_that_break_the_contract_send_nothing(
    make: Callable[..., Any], call: str, args: tuple[Any, ...]
) -> None:
    recorder = Recorder()
    gateway, _ = make(recorder)
    with pytest.raises(InvalidRequest) as caught:
        await getattr(gateway, call)(*args)
    assert caught.value.code == "invalid_request"
    assert recorder.requests == []


def test_settings_refuse_a_bad_apiv3_key_and_no_platform_key() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        settings(apiv3_key="too-short")
    with pytest.raises(ValueError, match="platform key"):
        settings(platform_public_pems={})


async def test_gateway_made_client_is_closed_on_exit() -> None:
    async with WechatPayV3Gateway(settings()) as gateway:
        client = gateway._client
    assert client.is_closed
