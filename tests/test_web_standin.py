"""STAND-IN for the scan-to-pay JSON API, used by the fast resident-page tests.

>>> THIS IS NOT THE REAL API. <<<

The pages were begun while the orders and public routers were still being
written, against this small in-memory stand-in that answers the same paths
with the same fields. The real routers have since landed in `create_app`:
tests/test_web_real_api.py and the browser test tests/test_web_browser.py run
the pages on the REAL app (provider simulator, fake shed, real HTTP). This
stand-in is kept only for tests/test_web_pages.py: quick, deterministic
rendering checks of every socket state, problem shape and form mistake,
including failures the real app cannot easily be made to produce (an
injected 500, a `{"detail": ...}` body). Delete it and those tests if they
are not wanted.

It prices with the real tariff engine (`controller.core.tariffs`), so the
posted price and the receipt lines are the real ones; everything else
(orders, the socket switching on, refunds, SMS codes) is simulated here.
The tests at the bottom of this file check its answers against the real
pydantic schemas (`api.schemas.public`, `api.schemas.orders`), so the two
cannot drift apart unnoticed.

The stand-in also plays the payment provider: `GET /standin-pay/{no}` is a pay
page whose "确认支付" button pays the order and returns the browser to
`/o/{no}`, as the provider's return URL does in the demo.

Orders move on when they are read (`GET /api/v1/orders/{no}`), so tests
step them deterministically:
created --confirm--> starting --read--> charging --stop--> stopping --read-->
ended (refunding, refund processing) --read--> refunded (refund success).
"""

from __future__ import annotations

import html
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.testclient import TestClient

from api.web import web_router
from controller.core.tariffs import (
    Tariff,
    Usage,
    bill_to_dict,
    compute_bill,
    default_tariff,
    describe,
)

SHED = "demo-1"
SHED_NAME = "天通苑东区1号车棚"
COMPOUND = "天通苑小区"
PORTS = range(1, 13)
DEPOSIT_FEN = 500
AMOUNTS_FEN = (100, 200, 300, 500)
BAYS = 6
BAYS_TAKEN = 2
SMS_CODE = "246810"
COOKIE = "ebshed_resident"
CHARGER_W = 240.0
START_DELAY_MS = 800  # the socket is on within a second of the payment
T0_MS = 1_795_347_000_000  # 2026-11-22 19:30 China time: the evening plug-in


class ManualClock:
    def __init__(self, start_ms: int = T0_MS) -> None:
        self.ms = start_ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, minutes: float) -> None:
        self.ms += int(minutes * 60_000)


class ScaledClock:
    """Simulated time running `speed` times faster than the wall clock (for the browser)."""

    def __init__(self, speed: float, start_ms: int = T0_MS) -> None:
        self._speed = speed
        self._start_ms = start_ms
        self._t0 = time.monotonic()

    def __call__(self) -> int:
        return self._start_ms + int((time.monotonic() - self._t0) * 1000 * self._speed)


@dataclass
class StandInOrder:
    out_trade_no: str
    port: int
    mode: str
    amount_fen: int
    phone: str
    created_ms: int
    status: str = "created"
    paid_fen: int = 0
    paid_ms: int | None = None
    usage: Usage | None = None
    session_state: str = "charging"
    stop_ms: int | None = None
    stop_seen: bool = False
    ended_ms: int | None = None
    end_reason: str | None = None
    receipt: dict[str, Any] | None = None
    reads_after_end: int = 0


class StandInApi:
    """The JSON API's public and order paths, in memory. See the module docstring."""

    def __init__(self, now_ms: Callable[[], int], tariff: Tariff | None = None) -> None:
        self.now_ms = now_ms
        self.tariff = tariff or default_tariff()
        self.states: dict[int, str] = dict.fromkeys(PORTS, "idle")
        self.states |= {8: "charging", 9: "fault", 10: "offline", 11: "disabled"}
        self.online = True
        self.orders: dict[str, StandInOrder] = {}
        self.sms: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        # "METHOD /path" -> status: answer the next such API call with this status
        self.fail_next: dict[str, int] = {}
        self._numbers = itertools.count(1)

    # ----------------------------------------------------------------- answers

    def price(self) -> dict[str, Any]:
        return dict(describe(self.tariff))

    def reason(self, port: int) -> str | None:
        if not self.online:
            return "shed_offline"
        state = self.states[port]
        if state == "idle":
            return None
        return state if state in ("fault", "offline", "disabled") else "busy"

    def shed_answer(self) -> dict[str, Any]:
        free = sum(1 for p in PORTS if self.reason(p) is None)
        return {
            "shed": SHED,
            "name": SHED_NAME,
            "compound": COMPOUND,
            "free_sockets": free,
            "total_sockets": len(PORTS),
            "free_bays": BAYS - BAYS_TAKEN,
            "total_bays": BAYS,
            "online": self.online,
            "price": self.price(),
        }

    def socket_answer(self, port: int) -> dict[str, Any]:
        reason = self.reason(port)
        return {
            "shed": SHED,
            "shed_name": SHED_NAME,
            "port": port,
            "state": self.states[port],
            "payable": reason is None,
            "reason": reason,
            "price": self.price(),
            "deposit_fen": DEPOSIT_FEN,
            "amounts_fen": list(AMOUNTS_FEN),
        }

    def _advance(self, order: StandInOrder) -> None:
        """What happened since the last read (see the module docstring)."""
        now = self.now_ms()
        if order.status == "starting" and order.paid_ms is not None:
            order.status = "charging"
            order.usage = Usage(order.paid_ms + START_DELAY_MS)
            self.states[order.port] = "charging"
        if order.usage is None or order.ended_ms is not None:
            if order.receipt is not None:
                order.reads_after_end += 1
                if order.reads_after_end >= 2 and order.receipt["refund_status"] == "processing":
                    order.receipt["refund_status"] = "success"
                    order.status = "refunded"
            return
        upto = order.stop_ms if order.stop_ms is not None else now
        self._feed(order.usage, upto)
        if order.session_state == "stopping" and not order.stop_seen:
            order.stop_seen = True  # one read shows "stopping"
        elif order.session_state == "stopping":
            # The shed confirmed the stop since the last read: bill and refund.
            order.ended_ms = order.stop_ms
            order.end_reason = "resident"
            order.session_state = "ended"
            bill = bill_to_dict(
                compute_bill(self.tariff, order.usage, upto, prepaid_fen=order.paid_fen)
            )
            refund = order.paid_fen - bill["total_fen"]
            order.receipt = {
                "lines": bill["lines"],
                "billed_fen": bill["total_fen"],
                "refund_fen": refund,
                "refund_status": "processing" if refund else None,
            }
            order.status = "refunding" if refund else "closed"
            self.states[order.port] = "idle"

    @staticmethod
    def _feed(usage: Usage, upto: int) -> None:
        if upto <= usage.last_ms:
            return
        target_wh = int(CHARGER_W * (upto - usage.start_ms) / 3_600_000)
        usage.add(upto, CHARGER_W, max(target_wh - usage.total_wh, 0))

    def order_answer(self, order: StandInOrder) -> dict[str, Any]:
        session = None
        if order.usage is not None:
            at = order.ended_ms if order.ended_ms is not None else self.now_ms()
            bill = compute_bill(self.tariff, order.usage, at, prepaid_fen=order.paid_fen)
            session = {
                "state": order.session_state,
                "w": None if order.ended_ms is not None else CHARGER_W,
                "energy_wh": order.usage.total_wh,
                "minutes": order.usage.started_minutes(at),
                "cost_fen": bill.total_fen,
                "started_ms": order.usage.start_ms,
                "ended_ms": order.ended_ms,
                "end_reason": order.end_reason,
            }
        return {
            "out_trade_no": order.out_trade_no,
            "status": order.status,
            "shed": SHED,
            "port": order.port,
            "mode": order.mode,
            "amount_fen": order.amount_fen,
            "paid_fen": order.paid_fen,
            "session": session,
            "receipt": order.receipt,
            "problem": None,
            "pay_url": None,
            "expires_ms": order.created_ms + 600_000,
            "created_ms": order.created_ms,
        }

    # ----------------------------------------------------------------- actions for tests

    def pay(self, out_trade_no: str) -> StandInOrder:
        order = self.orders[out_trade_no]
        if order.status == "created":
            order.status = "starting"
            order.paid_fen = order.amount_fen
            order.paid_ms = self.now_ms()
            self.states[order.port] = "authorized"
        return order

    # ----------------------------------------------------------------- HTTP

    def router(self) -> APIRouter:
        api = APIRouter(prefix="/api/v1")
        problem = _problem

        @api.get("/public/sheds/{shed_id}")
        def public_shed(shed_id: str) -> Response:
            if shed_id != SHED:
                return JSONResponse({"detail": "Not Found"}, 404)  # FastAPI's shape
            return JSONResponse(self.shed_answer())

        @api.get("/public/sheds/{shed_id}/sockets/{port}")
        def public_socket(shed_id: str, port: int) -> Response:
            if shed_id != SHED or port not in self.states:
                return problem(404, "unknown_socket", f"no socket {port} in {shed_id}")
            return JSONResponse(self.socket_answer(port))

        @api.post("/orders")
        async def create_order(request: Request) -> Response:
            body = await request.json()
            port, mode = body.get("port"), body.get("mode")
            phone = body.get("phone") or self._phone_of(request)
            if body.get("shed_id") != SHED or port not in self.states:
                return problem(404, "unknown_socket", "no such socket")
            if mode not in ("until_full", "amount") or not phone:
                return JSONResponse({"detail": [{"msg": "mode and phone are required"}]}, 422)
            reason = self.reason(port)
            if reason is not None:
                return problem(409, reason, f"socket {port} cannot be paid for: {reason}")
            amount = DEPOSIT_FEN if mode == "until_full" else body.get("amount_fen")
            if type(amount) is not int or amount < 1:
                return problem(422, "invalid_request", "amount_fen must be a positive integer")
            no = f"EBS{next(self._numbers):08d}"
            self.orders[no] = StandInOrder(no, port, mode, amount, phone, self.now_ms())
            pay_url = f"{str(request.base_url).rstrip('/')}/standin-pay/{no}"
            return JSONResponse(
                {
                    "out_trade_no": no,
                    "status": "created",
                    "amount_fen": amount,
                    "code_url": pay_url,
                    "pay_url": pay_url,
                    "expires_ms": self.now_ms() + 600_000,
                },
                201,
            )

        @api.get("/orders/{no}")
        def get_order(no: str) -> Response:
            order = self.orders.get(no)
            if order is None:
                return problem(404, "unknown_order", f"no order {no}")
            self._advance(order)
            return JSONResponse(self.order_answer(order))

        @api.post("/orders/{no}/stop")
        def stop_order(no: str) -> Response:
            order = self.orders.get(no)
            if order is None:
                return problem(404, "unknown_order", f"no order {no}")
            self._advance(order)
            if order.usage is None or order.ended_ms is not None:
                return problem(409, "not_running", "this order has no running session")
            if order.stop_ms is None:
                order.stop_ms = self.now_ms()
                order.session_state = "stopping"
            return JSONResponse({"out_trade_no": no, "command_id": f"stop-{no}"}, 202)

        @api.post("/auth/sms")
        async def sms(request: Request) -> Response:
            phone = (await request.json()).get("phone")
            if not isinstance(phone, str) or len(phone) != 11:
                return problem(422, "invalid_request", "phone")
            self.sms[phone] = SMS_CODE
            return JSONResponse({"sent": True, "expires_in_s": 300, "resend_after_s": 60})

        @api.post("/auth/login")
        async def login(request: Request) -> Response:
            body = await request.json()
            phone, code = body.get("phone"), body.get("code")
            if not isinstance(phone, str) or self.sms.get(phone) != code:
                return problem(400, "wrong_code", "wrong code")
            token = f"tok-{phone}"
            self.tokens[token] = phone
            resp = JSONResponse(
                {"token": token, "phone": phone, "expires_ms": self.now_ms() + 86_400_000}
            )
            resp.set_cookie(COOKIE, token, httponly=True, samesite="lax", path="/")
            return resp

        @api.post("/auth/logout")
        def logout(request: Request) -> Response:
            self.tokens.pop(request.cookies.get(COOKIE, ""), None)
            resp = Response(status_code=204)
            resp.delete_cookie(COOKIE, path="/")
            return resp

        @api.get("/me/sessions")
        def me_sessions(request: Request) -> Response:
            phone = self._phone_of(request)
            if phone is None:
                return problem(401, "unauthorized", "log in first")
            mine = [o for o in self.orders.values() if o.phone == phone and o.status != "created"]
            for order in mine:
                self._advance(order)
            answers = [self.order_answer(o) for o in reversed(mine)]
            return JSONResponse({"phone": phone, "orders": answers})

        outer = APIRouter()

        @outer.get("/standin-pay/{no}", response_class=HTMLResponse)
        def pay_page(no: str) -> HTMLResponse:
            order = self.orders.get(no)
            if order is None:
                return HTMLResponse("no such order", 404)
            amount = f"¥{order.amount_fen // 100}.{order.amount_fen % 100:02d}"
            return HTMLResponse(
                '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                '<link rel="icon" href="data:,">'
                "<title>模拟支付 / Stand-in pay page</title></head><body>"
                "<h1>模拟支付页（测试替身）/ Stand-in pay page (tests only)</h1>"
                f"<p>{html.escape(SHED_NAME)} {order.port}号插座</p>"
                f'<p class="amount" id="amount">{amount}</p>'
                f'<form method="post" action="/standin-pay/{html.escape(no)}/confirm">'
                '<button id="confirm">确认支付 / Pay</button></form></body></html>'
            )

        @outer.post("/standin-pay/{no}/confirm")
        def pay_confirm(no: str) -> Response:
            if no not in self.orders:
                return HTMLResponse("no such order", 404)
            self.pay(no)
            return RedirectResponse(f"/o/{no}", 303)  # the provider's return URL

        outer.include_router(api)
        return outer

    def _phone_of(self, request: Request) -> str | None:
        return self.tokens.get(request.cookies.get(COOKIE, ""))

    def app(self) -> FastAPI:
        """The pages plus this stand-in, as one app (as the real app will include both)."""
        app = FastAPI()

        @app.middleware("http")
        async def fail_on_demand(request: Request, call_next: Any) -> Response:
            status = self.fail_next.pop(f"{request.method} {request.url.path}", None)
            if status is not None:
                return _problem(status, "internal_error", "injected failure")
            response: Response = await call_next(request)
            return response

        app.include_router(self.router())
        app.include_router(web_router)
        return app


def _problem(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status)


# --------------------------------------------------------------------------- the stand-in is honest


@pytest.fixture
def standin() -> tuple[StandInApi, ManualClock, TestClient]:
    clock = ManualClock()
    api = StandInApi(clock)
    return api, clock, TestClient(api.app())


def test_standin_answers_match_the_real_public_schemas(
    standin: tuple[StandInApi, ManualClock, TestClient],
) -> None:
    public = pytest.importorskip("api.schemas.public", reason="public schemas not written yet")
    _api, _clock, client = standin
    public.PublicShed.model_validate(client.get(f"/api/v1/public/sheds/{SHED}").json())
    for port in (1, 8, 9, 10, 11):
        answer = client.get(f"/api/v1/public/sheds/{SHED}/sockets/{port}").json()
        public.PublicSocket.model_validate(answer)


def test_standin_order_answers_match_the_real_order_schemas(
    standin: tuple[StandInApi, ManualClock, TestClient],
) -> None:
    orders = pytest.importorskip("api.schemas.orders", reason="order schemas not written yet")
    api, clock, client = standin
    body = {"shed_id": SHED, "port": 3, "mode": "amount", "amount_fen": 200, "phone": "13800138000"}
    created = client.post("/api/v1/orders", json=body)
    assert created.status_code == 201
    orders.OrderCreated.model_validate(created.json())
    no = created.json()["out_trade_no"]
    seen = [client.get(f"/api/v1/orders/{no}").json()]
    api.pay(no)
    seen.append(client.get(f"/api/v1/orders/{no}").json())
    clock.advance(37)
    assert client.post(f"/api/v1/orders/{no}/stop").status_code == 202
    for _ in range(4):
        seen.append(client.get(f"/api/v1/orders/{no}").json())
    for answer in seen:
        orders.OrderView.model_validate(answer)
    assert [a["status"] for a in seen] == [
        "created", "charging", "charging", "refunding", "refunding", "refunded"
    ]  # fmt: skip
    last = seen[-1]
    assert last["receipt"]["billed_fen"] + last["receipt"]["refund_fen"] == 200
    assert last["session"]["minutes"] == 37
    assert last["receipt"]["lines"][0]["unit"] == "min"
