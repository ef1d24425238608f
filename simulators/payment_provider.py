"""A payment provider speaking payments-v1 over real HTTP, for tests and the demo.

`PaymentProviderSimulator` runs a FastAPI app under uvicorn inside the running
event loop on a free port (`await sim.start()`, `sim.url`, `await sim.stop()`,
or `async with`). It keeps its books in memory (`simulators.payment_ledger`)
and speaks the wire of `simulators.payment_wire`:

| route | what |
|---|---|
| `POST /v3/pay/transactions/native` | create an order -> `{"code_url"}` (the pay page) |
| `GET /v3/pay/transactions/out-trade-no/{no}?mchid=` | query an order |
| `POST /v3/pay/transactions/out-trade-no/{no}/close` | close an unpaid order -> 204 |
| `POST /v3/refund/domestic/refunds` | refund (idempotent by `out_refund_no`) |
| `GET /v3/refund/domestic/refunds/{out_refund_no}` | query a refund |
| `GET /pay/{no}` | the page the resident's phone opens, with "确认支付 / Pay" |
| `POST /pay/{no}/confirm` | the button: pays the order |

Every `/v3/` request must carry a valid merchant signature (401 `SIGN_ERROR`
otherwise); every `/v3/` answer is signed with the platform key. Payments and
settled refunds are notified to `notify_url`: signed, AES-256-GCM encrypted,
resent on any non-2xx answer or no answer after 15 s, 15 s, 30 s, 3 min,
10 min, ... (about 24 h), each delay divided by `time_scale`. Each attempt is
signed afresh (new timestamp and nonce); the body and its `id` stay the same.

Knobs for tests and the demo: `simulate_payment()`, `duplicate_notifications`,
`resend()`, `inject_notification_fault()`, `fail_next_requests()`,
`refund_outcome`; introspection: `orders`, `refunds`, `notifications`,
`notification_attempts`.

For a demo, `python -m simulators.payment_provider --port 8090 --credentials out/pay`
serves it until Ctrl-C and writes what the API needs to talk to it.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import random
import signal
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse

from simulators import payment_wire as wire
from simulators.payment_ledger import (
    ProviderLedger,
    RefundOutcome,
    Refusal,
    SimOrder,
    SimRefund,
)
from simulators.payment_server import LocalServer

# The provider's resend schedule: 15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h (24h4m).
DEFAULT_RESEND_SCHEDULE_S: Final[tuple[float, ...]] = (
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
)  # fmt: skip
NotificationFault = Literal[
    "bad_signature", "stale_timestamp", "tampered_ciphertext", "unknown_serial"
]


class SimulatorRefusal(Exception):
    """`simulate_payment` on an order that cannot be paid."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(f"{refusal.code}: {refusal.message}")
        self.refusal = refusal


@dataclass(frozen=True)
class NotificationAttempt:
    """One POST of a notification to its `notify_url`."""

    notification_id: str
    event_type: str
    url: str
    attempt: int  # 0 is the first delivery; 1.. are resends
    delay_s: float  # provider seconds waited before this attempt (unscaled)
    sent_at_s: int  # provider clock
    elapsed_s: float  # real seconds since the notification was first sent
    status: int | None  # None when there was no answer
    error: str
    duplicate: bool  # sent on purpose after a delivery that succeeded
    fault: NotificationFault | None


@dataclass
class OutgoingNotification:
    notification_id: str
    event_type: str
    url: str
    body: bytes
    out_trade_no: str
    out_refund_no: str | None
    delivered: bool = False
    gave_up: bool = False
    attempts: list[NotificationAttempt] = field(default_factory=list)


class PaymentProviderSimulator:
    def __init__(
        self,
        account: wire.ProviderAccount | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        time_scale: float = 1.0,
        resend_schedule_s: Sequence[float] = DEFAULT_RESEND_SCHEDULE_S,
        duplicate_notifications: int = 0,
        refund_delay_s: float = 5.0,
        refund_outcome: RefundOutcome = "SUCCESS",
        seed: int | None = None,
        delivery_timeout_s: float = 5.0,
        public_url: str | None = None,
        return_url: str | None = None,
    ) -> None:
        """`account` defaults to freshly generated keys (`ProviderAccount.generate()`).

        `time_scale` divides every provider delay (resends, refund settlement):
        100 makes the 15 s resend arrive after 0.15 s. `clock` (Unix seconds)
        stamps signatures and decides expiry; it does not drive the delays.
        `public_url` is the base of `code_url` when phones reach the simulator
        by another address than `url` (a demo on a LAN). `return_url`, with
        `{out_trade_no}` in it, is where the pay page sends the phone back after
        paying (the merchant's order page); it may be set after start.
        """
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self._rng = random.Random(seed)
        self.account = account or wire.ProviderAccount.generate(rng=self._rng)
        self.clock = clock
        self.time_scale = time_scale
        self.resend_schedule_s = tuple(resend_schedule_s)
        self.duplicate_notifications = duplicate_notifications
        self.refund_delay_s = refund_delay_s
        self.refund_outcome: RefundOutcome = refund_outcome
        self.ledger = ProviderLedger(
            self.account.mchid, self.account.appid, rng=self._rng, code_url=self._code_url
        )
        self.notifications: list[OutgoingNotification] = []
        self.notification_attempts: list[NotificationAttempt] = []
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status) of /v3/ calls
        self._faults: list[NotificationFault] = []
        self._fail_next = 0
        self._fail_after_processing = True
        self._delivery_timeout_s = delivery_timeout_s
        self._public_url = public_url.rstrip("/") if public_url else None
        self.return_url = return_url
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._server = LocalServer(self._make_app(), host=host, port=port)

    # --- life cycle -----------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the running simulator, e.g. `http://127.0.0.1:43121`."""
        return self._server.url

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self._delivery_timeout_s)
        await self._server.start()

    async def stop(self) -> None:
        """Stop serving, then delivering; no task, connection or server is left."""
        await self._server.stop()  # first: no request can start new work after this
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> PaymentProviderSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- introspection and knobs -----------------------------------------------

    @property
    def orders(self) -> Mapping[str, SimOrder]:
        self.ledger.expire(self._now())
        return self.ledger.orders

    @property
    def refunds(self) -> Mapping[str, SimRefund]:
        return self.ledger.refunds

    def simulate_payment(self, out_trade_no: str) -> SimOrder:
        """Pay an order as the resident would; the notification goes out at once."""
        order = self.ledger.pay(out_trade_no, self._now())
        if isinstance(order, Refusal):
            raise SimulatorRefusal(order)
        self._notify_payment(order)
        return order

    def resend(self, notification_id: str) -> None:
        """Send a notification once more, as the provider sometimes does after a 2xx."""
        note = next(n for n in self.notifications if n.notification_id == notification_id)
        self._spawn(self._deliver(note, schedule=(), duplicate=True))

    def inject_notification_fault(self, fault: NotificationFault) -> None:
        """Corrupt the first attempt of the next notification; its resends are genuine."""
        self._faults.append(fault)

    def fail_next_requests(self, count: int, *, after_processing: bool = True) -> None:
        """Answer the next `count` `/v3/` requests with 500 SYSTEM_ERROR.

        With `after_processing` the request is carried out first and only the
        answer is lost, as when a connection drops: the merchant must retry
        with the same ids and must not create or refund twice.
        """
        self._fail_next = count
        self._fail_after_processing = after_processing

    async def wait_idle(self, timeout_s: float = 5.0) -> None:
        """Wait until no delivery or refund settlement is pending."""
        async with asyncio.timeout(timeout_s):
            while self._tasks:
                await asyncio.wait(set(self._tasks))

    # --- HTTP app -------------------------------------------------------------

    def _make_app(self) -> FastAPI:
        app = FastAPI(title="payments-v1 provider simulator", openapi_url=None, docs_url=None)

        @app.post("/v3/pay/transactions/native")
        async def create(request: Request) -> Response:
            return await self._api(request, self._create)

        @app.get("/v3/pay/transactions/out-trade-no/{out_trade_no}")
        async def query(request: Request) -> Response:
            return await self._api(request, self._query)

        @app.post("/v3/pay/transactions/out-trade-no/{out_trade_no}/close")
        async def close(request: Request) -> Response:
            return await self._api(request, self._close)

        @app.post("/v3/refund/domestic/refunds")
        async def refund(request: Request) -> Response:
            return await self._api(request, self._refund)

        @app.get("/v3/refund/domestic/refunds/{out_refund_no}")
        async def query_refund(request: Request) -> Response:
            return await self._api(request, self._query_refund)

        @app.get("/pay/{out_trade_no}", response_class=HTMLResponse)
        async def pay_page(out_trade_no: str) -> HTMLResponse:
            return self._pay_page(out_trade_no)

        @app.post("/pay/{out_trade_no}/confirm", response_class=HTMLResponse)
        async def pay_confirm(out_trade_no: str) -> HTMLResponse:
            return self._pay_confirm(out_trade_no)

        return app

    async def _api(
        self, request: Request, handler: Callable[[Request, bytes], tuple[int, Any]]
    ) -> Response:
        body = await request.body()
        query = request.scope.get("query_string", b"").decode("latin-1")
        url = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
        url += f"?{query}" if query else ""
        why = wire.check_merchant_request(
            self.account,
            request.method,
            url,
            body,
            request.headers.get("authorization"),
            self._now(),
        )
        if why is not None:
            status, payload = 401, {"code": "SIGN_ERROR", "message": why}
        elif self._fail_next and not self._fail_after_processing:
            self._fail_next -= 1
            status, payload = 500, {"code": "SYSTEM_ERROR", "message": "injected failure"}
        else:
            status, payload = handler(request, body)
            if self._fail_next:
                self._fail_next -= 1
                status, payload = 500, {"code": "SYSTEM_ERROR", "message": "injected failure"}
        self.requests.append((request.method, request.url.path, status))
        return self._signed(status, payload)

    def _signed(self, status: int, payload: Any) -> Response:
        body = b"" if payload is None else wire.canonical_json(payload)
        headers = wire.signature_headers(
            self.account.platform_private_key,
            self.account.platform_serial,
            str(self._now()),
            self._nonce(),
            body,
        )
        headers["Request-ID"] = f"{self._rng.getrandbits(64):016x}"
        media = "application/json" if body else None
        return Response(content=body, status_code=status, headers=headers, media_type=media)

    @staticmethod
    def _json(body: bytes) -> dict[str, Any] | Refusal:
        try:
            value = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return Refusal(400, "PARAM_ERROR", "body is not UTF-8 JSON")
        if type(value) is not dict:
            return Refusal(400, "PARAM_ERROR", "body is not a JSON object")
        return value

    @staticmethod
    def _refusal(refusal: Refusal) -> tuple[int, Any]:
        return refusal.status, {"code": refusal.code, "message": refusal.message}

    def _create(self, _request: Request, body: bytes) -> tuple[int, Any]:
        parsed = self._json(body)
        if isinstance(parsed, Refusal):
            return self._refusal(parsed)
        order = self.ledger.create_order(parsed, self._now())
        if isinstance(order, Refusal):
            return self._refusal(order)
        return 200, {"code_url": order.code_url}

    def _query(self, request: Request, _body: bytes) -> tuple[int, Any]:
        if request.query_params.get("mchid") != self.account.mchid:
            return self._refusal(Refusal(400, "PARAM_ERROR", "mchid query parameter"))
        order = self.ledger.order(request.path_params["out_trade_no"], self._now())
        if isinstance(order, Refusal):
            return self._refusal(order)
        return 200, self.ledger.query_payload(order)

    def _close(self, request: Request, body: bytes) -> tuple[int, Any]:
        parsed = self._json(body)
        if isinstance(parsed, Refusal):
            return self._refusal(parsed)
        if parsed.get("mchid") != self.account.mchid:
            return self._refusal(Refusal(400, "PARAM_ERROR", "mchid"))
        order = self.ledger.close(request.path_params["out_trade_no"], self._now())
        if isinstance(order, Refusal):
            return self._refusal(order)
        return 204, None

    def _refund(self, _request: Request, body: bytes) -> tuple[int, Any]:
        parsed = self._json(body)
        if isinstance(parsed, Refusal):
            return self._refusal(parsed)
        result = self.ledger.refund(parsed, self._now())
        if isinstance(result, Refusal):
            return self._refusal(result)
        refund, created = result
        if created:
            self._spawn(self._settle_refund(refund.out_refund_no))
        return 200, self.ledger.refund_payload(refund)

    def _query_refund(self, request: Request, _body: bytes) -> tuple[int, Any]:
        refund = self.ledger.refunds.get(request.path_params["out_refund_no"])
        if refund is None:
            return self._refusal(Refusal(404, "RESOURCE_NOT_EXISTS", "no such refund"))
        return 200, self.ledger.refund_payload(refund)

    # --- pay page -------------------------------------------------------------

    def _pay_page(self, out_trade_no: str) -> HTMLResponse:
        order = self.ledger.order(out_trade_no, self._now())
        if isinstance(order, Refusal):
            return _page("订单不存在 / No such order", "", status=404)
        yuan = f"¥{order.amount_fen // 100}.{order.amount_fen % 100:02d}"
        head = f"<p>{html.escape(order.description)}</p><p class=amount>{yuan}</p>"
        if order.state == "NOTPAY":
            action = f"/pay/{html.escape(order.out_trade_no)}/confirm"
            button = f'<form method="post" action="{action}"><button>确认支付 / Pay</button></form>'
            return _page("支付 / Pay", head + button)
        if order.state == "CLOSED":
            return _page("订单已关闭 / Order closed", head, status=410)
        return _page("已支付 / Paid", head)

    def _pay_confirm(self, out_trade_no: str) -> HTMLResponse:
        try:
            order = self.simulate_payment(out_trade_no)
        except SimulatorRefusal as err:
            status = 404 if err.refusal.status == 404 else 409
            return _page("无法支付 / Cannot pay", html.escape(err.refusal.message), status=status)
        yuan = f"¥{order.amount_fen // 100}.{order.amount_fen % 100:02d}"
        back, head = "", ""
        if self.return_url:
            target = html.escape(self.return_url.replace("{out_trade_no}", order.out_trade_no))
            back = f'<p><a id="return" href="{target}">返回商户 / Back to the merchant</a></p>'
            head = f'<meta http-equiv="refresh" content="1;url={target}">'
        return _page("支付成功 / Payment successful", f"<p class=amount>{yuan}</p>{back}",
                     head=head)

    # --- notifications --------------------------------------------------------

    def _notify_payment(self, order: SimOrder) -> None:
        assert order.resource is not None
        note = self._seal(
            event_type="TRANSACTION.SUCCESS",
            summary="支付成功",
            original_type="transaction",
            resource=order.resource,
            url=order.notify_url,
            out_trade_no=order.out_trade_no,
            out_refund_no=None,
        )
        self._spawn(self._deliver(note, self.resend_schedule_s, duplicate=False))

    async def _settle_refund(self, out_refund_no: str) -> None:
        await asyncio.sleep(self.refund_delay_s / self.time_scale)
        refund = self.ledger.settle_refund(out_refund_no, self.refund_outcome, self._now())
        summary = {"SUCCESS": "退款成功", "ABNORMAL": "退款异常", "CLOSED": "退款关闭"}
        note = self._seal(
            event_type=f"REFUND.{refund.status}",
            summary=summary[refund.status],
            original_type="refund",
            resource=self.ledger.refund_resource(refund),
            url=refund.notify_url,
            out_trade_no=refund.out_trade_no,
            out_refund_no=refund.out_refund_no,
        )
        self._spawn(self._deliver(note, self.resend_schedule_s, duplicate=False))

    def _seal(
        self,
        *,
        event_type: str,
        summary: str,
        original_type: str,
        resource: Mapping[str, Any],
        url: str,
        out_trade_no: str,
        out_refund_no: str | None,
    ) -> OutgoingNotification:
        event_id = f"EV-{self._rng.getrandbits(96):024X}"
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        body = wire.notification_body(
            event_id=event_id,
            create_time=wire.rfc3339(self._now()),
            event_type=event_type,
            summary=summary,
            original_type=original_type,
            resource=wire.canonical_json(resource),
            apiv3_key=self.account.apiv3_key,
            resource_nonce="".join(self._rng.choice(alphabet) for _ in range(12)),
        )
        note = OutgoingNotification(event_id, event_type, url, body, out_trade_no, out_refund_no)
        self.notifications.append(note)
        return note

    async def _deliver(
        self, note: OutgoingNotification, schedule: Sequence[float], *, duplicate: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        fault = None if duplicate or not self._faults else self._faults.pop(0)
        for attempt, delay in enumerate((0.0, *schedule)):
            if delay:
                await asyncio.sleep(delay / self.time_scale)
            status, error = await self._post(note, fault)
            elapsed = loop.time() - started
            self._record(note, attempt, delay, elapsed, status, error, duplicate, fault)
            fault = None
            if status is not None and 200 <= status < 300:
                break
        else:
            if not duplicate:
                note.gave_up = True
            return
        if duplicate or note.delivered:
            return
        note.delivered = True
        for _ in range(self.duplicate_notifications):
            status, error = await self._post(note, None)
            self._record(note, 0, 0.0, loop.time() - started, status, error, True, None)

    def _record(
        self,
        note: OutgoingNotification,
        attempt: int,
        delay: float,
        elapsed: float,
        status: int | None,
        error: str,
        duplicate: bool,
        fault: NotificationFault | None,
    ) -> None:
        record = NotificationAttempt(
            notification_id=note.notification_id,
            event_type=note.event_type,
            url=note.url,
            attempt=attempt,
            delay_s=delay,
            sent_at_s=self._now(),
            elapsed_s=elapsed,
            status=status,
            error=error,
            duplicate=duplicate,
            fault=fault,
        )
        note.attempts.append(record)
        self.notification_attempts.append(record)

    async def _post(
        self, note: OutgoingNotification, fault: NotificationFault | None
    ) -> tuple[int | None, str]:
        assert self._client is not None, "the simulator is not started"
        body, now = note.body, self._now()
        key, serial = self.account.platform_private_key, self.account.platform_serial
        if fault == "tampered_ciphertext":
            body = _tamper_ciphertext(body)
        if fault == "stale_timestamp":
            now -= wire.SIGNATURE_WINDOW_S + 100
        if fault == "unknown_serial":
            serial = "0" * 40
        headers = wire.signature_headers(key, serial, str(now), self._nonce(), body)
        if fault == "bad_signature":
            other = wire.signature_headers(key, serial, str(now), self._nonce(), body + b" ")
            headers["Wechatpay-Signature"] = other["Wechatpay-Signature"]
        headers["Content-Type"] = "application/json"
        try:
            response = await self._client.post(note.url, content=body, headers=headers)
        except httpx.HTTPError as err:
            return None, f"{type(err).__name__}: {err}"
        return response.status_code, ""

    # --- helpers ----------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _now(self) -> int:
        return int(self.clock())

    def _nonce(self) -> str:
        return f"{self._rng.getrandbits(128):032X}"

    def _code_url(self, out_trade_no: str) -> str:
        return f"{self._public_url or self.url}/pay/{out_trade_no}"


def _tamper_ciphertext(body: bytes) -> bytes:
    envelope = json.loads(body)
    text = envelope["resource"]["ciphertext"]
    envelope["resource"]["ciphertext"] = ("A" if text[0] != "A" else "B") + text[1:]
    return wire.canonical_json(envelope)


def _page(title: str, content: str, *, status: int = 200, head: str = "") -> HTMLResponse:
    page = (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{head}<title>{title}</title></head><body><h1>{title}</h1>{content}</body></html>"
    )
    return HTMLResponse(page, status_code=status)


def write_credentials(sim: PaymentProviderSimulator, folder: Path) -> None:
    """What the API needs to talk to this simulator: keys, serials, API v3 key (test only)."""
    account = sim.account
    folder.mkdir(parents=True, exist_ok=True)
    if account.merchant_private_pem is not None:
        (folder / "merchant-private.pem").write_bytes(account.merchant_private_pem)
    (folder / "platform-public.pem").write_bytes(account.platform_public_pem)
    settings = {
        "base_url": sim.url,
        "mchid": account.mchid,
        "appid": account.appid,
        "merchant_serial": account.merchant_serial,
        "platform_serial": account.platform_serial,
        "apiv3_key": account.apiv3_key.decode("ascii"),
    }
    (folder / "provider.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


async def _serve(args: argparse.Namespace) -> None:
    account = wire.ProviderAccount.from_vectors(args.vectors) if args.vectors else None
    sim = PaymentProviderSimulator(
        account,
        host=args.host,
        port=args.port,
        time_scale=args.time_scale,
        duplicate_notifications=args.duplicates,
        public_url=args.public_url,
        return_url=args.return_url,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with sim:
        if args.credentials:
            write_credentials(sim, args.credentials)
        print(f"payment provider simulator on {sim.url} (mchid {sim.account.mchid})", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.payment_provider",
        description="A payments-v1 provider over HTTP, for demos and manual tests.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--public-url", help="base of code_url, if phones use another address")
    parser.add_argument("--return-url", help="where the pay page sends the phone after paying "
                        "({out_trade_no} is replaced), e.g. http://host:8000/o/{out_trade_no}")
    parser.add_argument("--time-scale", type=float, default=1.0, help="divide resend delays")
    parser.add_argument("--duplicates", type=int, default=0, help="extra copies per notification")
    parser.add_argument("--vectors", type=Path, help="use the contract's test keys in this folder")
    parser.add_argument("--credentials", type=Path, help="write the API's keys and ids here")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
