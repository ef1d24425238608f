"""The payment provider simulator against the payments-v1 vectors.

The simulator's wire (simulators.payment_wire) is written apart from the API's
adapter; here it must reproduce the vectors byte for byte, accept the vector's
signed order request, and its real notifications must have the vector's form
and pass the adapter's checks.
"""

from __future__ import annotations

import json
import random
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response

from api.payments import PaymentNotification, WechatPaySettings, WechatPayV3Gateway
from simulators import payment_wire as wire
from simulators.payment_ledger import ProviderLedger, SimOrder
from simulators.payment_provider import PaymentProviderSimulator
from simulators.payment_server import LocalServer

pytest_plugins = ["tests.leaks"]

FIXTURES = Path(__file__).parent / "fixtures" / "contracts"
VECTORS: dict[str, Any] = json.loads((FIXTURES / "payments-v1.json").read_text(encoding="utf-8"))
ORDER = VECTORS["order_request"]
NOTE = VECTORS["notification"]
NOTE_BODY = json.loads(NOTE["body"])
ACCOUNT = wire.ProviderAccount.from_vectors(FIXTURES)
T_ORDER = int(ORDER["timestamp"])
T_NOTE = int(NOTE["headers"]["Wechatpay-Timestamp"])




def test_sim_wire_reproduces_the_vector_notification_byte_for_byte() -> None:
    resource = NOTE_BODY["resource"]
    plain = wire.canonical_json(NOTE["decrypted_resource"])
    body = wire.notification_body(
        event_id=NOTE_BODY["id"],
        create_time=NOTE_BODY["create_time"],
        event_type=NOTE_BODY["event_type"],
        summary=NOTE_BODY["summary"],
        original_type=resource["original_type"],
        resource=plain,
        apiv3_key=ACCOUNT.apiv3_key,
        resource_nonce=resource["nonce"],
    )
    assert body == NOTE["body"].encode()
    headers = wire.signature_headers(
        ACCOUNT.platform_private_key,
        ACCOUNT.platform_serial,
        NOTE["headers"]["Wechatpay-Timestamp"],
        NOTE["headers"]["Wechatpay-Nonce"],
        body,
    )
    assert headers == {k: v for k, v in NOTE["headers"].items() if k != "Content-Type"}


def test_ledger_payment_resource_has_the_vector_fields_in_the_vector_order() -> None:
    books = ProviderLedger(
        ACCOUNT.mchid, ACCOUNT.appid, rng=random.Random(1), code_url=lambda no: no
    )
    order_body = json.loads(ORDER["body"])
    assert isinstance(books.create_order(order_body, T_ORDER), SimOrder)
    success_s = 1_795_348_890  # 2026-11-22T20:01:30+08:00, the vector's success_time
    order = books.pay(order_body["out_trade_no"], success_s)
    assert isinstance(order, SimOrder) and order.success_s == success_s
    # ids are the provider's own; take the vector's to compare whole documents
    order.transaction_id = NOTE["decrypted_resource"]["transaction_id"]
    order.payer_openid = NOTE["decrypted_resource"]["payer"]["openid"]
    resource = books.transaction_resource(order)
    assert resource == NOTE["decrypted_resource"]
    assert list(resource) == list(NOTE["decrypted_resource"])
    assert wire.canonical_json(resource) == wire.canonical_json(NOTE["decrypted_resource"])


def test_sim_accepts_the_vector_order_request_and_refuses_altered_ones() -> None:
    def check(
        body: str = ORDER["body"],
        auth: str | None = ORDER["authorization"],
        now: int = T_ORDER,
        path: str = ORDER["path"],
    ) -> str | None:
        return wire.check_merchant_request(ACCOUNT, "POST", path, body.encode(), auth, now)

    assert check() is None
    assert check(now=T_ORDER + 300) is None
    assert check(body=ORDER["body"].replace("300", "3")) == "signature does not verify"
    assert check(path="/v3/pay/transactions/h5") == "signature does not verify"
    assert check(now=T_ORDER + 301) is not None
    assert check(auth=None) == "missing Authorization"
    assert check(auth=ORDER["authorization"].replace(ORDER["merchant_serial"], "0" * 40))
    assert check(auth=ORDER["authorization"].replace("1230000109", "1900000001"))
    assert check(auth="Bearer token")


class Capture:
    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.app = FastAPI()
        self.app.add_api_route("/notify", self.notify, methods=["POST"])

    async def notify(self, request: Request) -> Response:
        self.received.append((dict(request.headers), await request.body()))
        return Response(status_code=204)


async def test_sim_notifications_have_the_vector_form_and_verify(no_leaks: None) -> None:
    clock = [float(T_ORDER)]
    capture = Capture()
    sim = PaymentProviderSimulator(ACCOUNT, clock=lambda: clock[0], seed=3)
    async with sim, LocalServer(capture.app) as receiver:
        settings = WechatPaySettings.from_pem(
            base_url=sim.url,
            mchid=ACCOUNT.mchid,
            appid=ACCOUNT.appid,
            merchant_serial=ACCOUNT.merchant_serial,
            merchant_private_key_pem=(FIXTURES / "payments-merchant-private.pem").read_bytes(),
            platform_public_pems={
                VECTORS["platform_serial"]: (FIXTURES / "payments-platform-public.pem").read_bytes()
            },
            apiv3_key=VECTORS["apiv3_key"],
        )
        async with WechatPayV3Gateway(settings, clock=lambda: clock[0]) as gateway:
            order = json.loads(ORDER["body"])
            await gateway.create_order(
                order["out_trade_no"],
                order["description"],
                order["amount"]["total"],
                datetime.fromisoformat(order["time_expire"]),
                f"{receiver.url}/notify",
            )
            clock[0] = float(T_NOTE)
            sim.simulate_payment(order["out_trade_no"])
            await sim.wait_idle()
            [(headers, body)] = capture.received
            note = gateway.parse_notification(headers, body, T_NOTE)
    # headers: the vector's names, a 300 s-fresh timestamp, the platform serial
    for name in NOTE["headers"]:
        assert name.lower() in headers
    assert headers["wechatpay-timestamp"] == str(T_NOTE)
    assert headers["wechatpay-serial"] == VECTORS["platform_serial"]
    assert len(headers["wechatpay-nonce"]) == len(NOTE["headers"]["Wechatpay-Nonce"])
    assert headers["content-type"] == "application/json"
    # body: the vector's fields in its order, the same algorithm and associated data
    got = json.loads(body)
    assert list(got) == list(NOTE_BODY)
    assert list(got["resource"]) == list(NOTE_BODY["resource"])
    for field in ("resource_type", "event_type", "summary"):
        assert got[field] == NOTE_BODY[field]
    for field in ("original_type", "algorithm", "associated_data"):
        assert got["resource"][field] == NOTE_BODY["resource"][field]
    assert len(got["resource"]["nonce"]) == 12
    # content: what the adapter reads is the order that was paid
    assert isinstance(note, PaymentNotification)
    assert (note.out_trade_no, note.amount_total, note.payer_total) == (
        "EBS20261122A0007",
        300,
        300,
    )
    assert note.notification_id == got["id"]
