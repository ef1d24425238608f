"""The scan-to-pay test bench (no tests here; the `test_orders_*` modules use it).

Everything talks over real HTTP on free ports, inside the test's event loop:

- the central API (`create_app` with the real `WechatPayV3Gateway`), served by
  uvicorn; its lifespan runs here, its payment workers are stepped by the
  tests (`await env.rt.run_once()`) unless a test turns them on;
- the payment provider simulator (real RSA signatures, AES-GCM), which
  POSTs its notifications to the API's notify_url;
- a fake shed that uses the real shed endpoints: uplink records, the
  commands long poll, command results.

One clock (the API's `FakeClock`, in ms) drives the API, the gateway and the
provider, so signatures, the 300 s window, expiry and the 30 s start timeout
all move together when a test moves it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.main import create_app
from api.models import Command, Order, Payment, Refund
from api.payments import WechatPaySettings, WechatPayV3Gateway
from api.services.orders_workers import OrdersRuntime
from controller.core.tariffs import Usage, bill_to_dict, compute_bill, default_tariff
from simulators import payment_wire as wire
from simulators.payment_provider import PaymentProviderSimulator, write_credentials
from simulators.payment_server import LateApp, LocalServer

if TYPE_CHECKING:  # tests.api_db is a pytest plugin: imported by pytest first, not here
    from tests.api_db import FakeClock

# RSA keys are slow to make and to load, TLS contexts slow to build: once per session.
ACCOUNT = wire.ProviderAccount.generate(rng=random.Random(20261122))
MERCHANT = WechatPaySettings.from_pem(
    base_url="http://provider.invalid",
    mchid=ACCOUNT.mchid,
    appid=ACCOUNT.appid,
    merchant_serial=ACCOUNT.merchant_serial,
    merchant_private_key_pem=ACCOUNT.merchant_private_pem or b"",
    platform_public_pems={ACCOUNT.platform_serial: ACCOUNT.platform_public_pem},
    apiv3_key=ACCOUNT.apiv3_key,
    retry_backoff_s=0.0,
)
TLS = ssl.create_default_context()  # unused on plain HTTP, but httpx builds one per client
SCALE = 100.0  # provider delays / SCALE: a 5 s refund settles in 50 ms
PHONE_A = "13800138000"
PHONE_B = "13900139000"


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0, what: str = "condition"
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class FakeShed:
    """A shed as the central API sees it: records up, commands down."""

    http: httpx.AsyncClient
    shed_id: str
    headers: dict[str, str]
    clock: FakeClock
    after: int = 0
    ports: tuple[int, ...] = (1, 2, 3, 4)
    _versions: dict[tuple[str, str], int] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def uplink(self, kind: str, key: str, data: dict[str, Any]) -> dict[str, Any]:
        version = self._versions.get((kind, key), 0) + 1
        self._versions[(kind, key)] = version
        record = {
            "id": f"r{next(self._ids)}",
            "kind": kind,
            "key": key,
            "version": version,
            "ts": self.clock.now,
            "data": data,
        }
        response = await self.http.post(
            f"/api/v1/sheds/{self.shed_id}/uplink", json={"records": [record]}, headers=self.headers
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        assert not answer["rejected"], answer
        return answer

    async def socket(self, port: int, state: str) -> None:
        data = {"port": port, "state": state, "since": self.clock.now}
        await self.uplink("socket", str(port), data)

    async def hello(self, state: str = "idle") -> None:
        """Report every socket (and so be online)."""
        for port in self.ports:
            await self.socket(port, state)

    async def poll(self, wait: float = 0.0) -> list[dict[str, Any]]:
        response = await self.http.get(
            f"/api/v1/sheds/{self.shed_id}/commands",
            params={"after": self.after, "wait": wait},
            headers=self.headers,
        )
        assert response.status_code == 200, response.text
        commands: list[dict[str, Any]] = response.json()["commands"]
        if commands:
            self.after = max(c["seq"] for c in commands)
        return commands

    async def next_command(self, wait: float = 3.0) -> dict[str, Any]:
        commands = await self.poll(wait)
        assert len(commands) == 1, commands
        return commands[0]

    async def answer(
        self,
        command: dict[str, Any],
        ok: bool,
        code: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        response = await self.http.post(
            f"/api/v1/sheds/{self.shed_id}/commands/{command['id']}/result",
            json={"ok": ok, "code": code, "message": None if ok else code, "data": data or {}},
            headers=self.headers,
        )
        assert response.status_code == 200, response.text


@dataclass
class ChargeRun:
    """A session on the fake shed, billed by the real tariff engine."""

    shed: FakeShed
    session_id: str
    port: int
    order_no: str
    prepaid_fen: int
    mode: str
    usage: Usage
    w: float = 0.0
    flags: list[str] = field(default_factory=list)  # as the shed's session record has them

    def data(self, *, ended_ms: int | None = None, end_reason: str | None = None) -> dict[str, Any]:
        tariff = default_tariff()
        now = self.shed.clock.now
        bill = compute_bill(tariff, self.usage, ended_ms or now, prepaid_fen=self.prepaid_fen)
        return {
            "id": self.session_id,
            "port": self.port,
            "auth": {
                "kind": "order",
                "ref": self.order_no,
                "prepaid_fen": self.prepaid_fen,
                "mode": self.mode,
            },
            "started_ms": self.usage.start_ms,
            "ended_ms": ended_ms,
            "end_reason": end_reason,
            "energy_wh": self.usage.total_wh,
            "peak_w": self.w,
            "w": 0.0 if ended_ms else self.w,
            "cost_fen": self.usage.cost_so_far_fen(tariff),
            "billed_fen": bill.total_fen if ended_ms else 0,
            "refund_fen": self.prepaid_fen - bill.total_fen if ended_ms else 0,
            "bill": bill_to_dict(bill) if ended_ms else None,
            "flags": list(self.flags),
        }

    async def report(self) -> None:
        await self.shed.uplink("session", self.session_id, self.data())

    async def charge(self, minutes: int, w: float) -> None:
        """`minutes` of charging at `w` (the clock moves with it), then a checkpoint."""
        self.w = w
        for _ in range(minutes):
            self.shed.clock.now += 60_000
            self.usage.add(self.shed.clock.now, w, round(w / 60))
        await self.report()

    async def close(self, end_reason: str = "resident") -> dict[str, Any]:
        data = self.data(ended_ms=self.shed.clock.now, end_reason=end_reason)
        await self.shed.uplink("session", self.session_id, data)
        return data


@dataclass
class PayEnv:
    app: Any
    http: httpx.AsyncClient  # to the API over real HTTP
    url: str
    clock: FakeClock
    sim: PaymentProviderSimulator
    gateway: WechatPayV3Gateway
    admin: dict[str, str] = field(default_factory=dict)

    @property
    def rt(self) -> OrdersRuntime:
        runtime = self.app.state.ctx.orders
        assert isinstance(runtime, OrdersRuntime)
        return runtime

    def db(self) -> Session:
        session: Session = self.app.state.ctx.sessions()
        return session

    async def shed(self, ports: tuple[int, ...] = (1, 2, 3, 4), *, hello: bool = True) -> FakeShed:
        """Register a shed (and its compound); it reports its sockets idle."""
        shed_id = f"shed-{uuid.uuid4().hex[:8]}"
        await self.http.post(
            "/api/v1/admin/compounds", json={"id": "demo", "name": "演示小区"}, headers=self.admin
        )
        response = await self.http.post(
            "/api/v1/admin/sheds",
            json={
                "id": shed_id,
                "name": "1号车棚",
                "compound_id": "demo",
                "ports": list(ports),
                "bays": [{"number": 1, "port": 1}, {"number": 2}],
            },
            headers=self.admin,
        )
        assert response.status_code == 201, response.text
        token = {"Authorization": f"Bearer {response.json()['token']}"}
        shed = FakeShed(self.http, shed_id, token, self.clock, ports=ports)
        if hello:
            await shed.hello()
        return shed

    async def order(
        self, shed: FakeShed, port: int = 1, phone: str = PHONE_A, **body: Any
    ) -> httpx.Response:
        payload = {"shed_id": shed.shed_id, "port": port, "mode": "until_full", "phone": phone}
        payload.update(body)
        return await self.http.post("/api/v1/orders", json=payload)

    async def new_order(self, shed: FakeShed, port: int = 1, **body: Any) -> dict[str, Any]:
        response = await self.order(shed, port, **body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def view(self, no: str) -> dict[str, Any]:
        response = await self.http.get(f"/api/v1/orders/{no}")
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        return view

    async def status_becomes(self, no: str, status: str, timeout_s: float = 5.0) -> dict[str, Any]:
        async def check() -> bool:
            return (await self.view(no))["status"] == status

        await eventually(check, timeout_s, f"order {no} -> {status}")
        return await self.view(no)

    async def pay_on_page(self, created: dict[str, Any]) -> None:
        """What the resident does: open the pay page, press 确认支付."""
        async with httpx.AsyncClient(verify=TLS) as phone:
            page = await phone.get(created["pay_url"])
            assert page.status_code == 200 and "确认支付" in page.text, page.text
            confirm = await phone.post(f"{created['pay_url']}/confirm")
            assert confirm.status_code == 200, confirm.text

    async def start(self, shed: FakeShed, created: dict[str, Any]) -> ChargeRun:
        """The shed takes the start command, answers ok and reports the session."""
        command = await shed.next_command()
        assert command["kind"] == "start_session"
        data = command["data"]
        assert data["order_no"] == created["out_trade_no"]
        session_id = f"s-{uuid.uuid4().hex[:8]}"
        await shed.answer(command, True, data={"session_id": session_id})
        run = ChargeRun(
            shed, session_id, data["port"], data["order_no"], data["prepaid_fen"], data["mode"],
            Usage(self.clock.now),
        )  # fmt: skip
        await run.report()
        return run

    # --- the books -------------------------------------------------------------

    def count(self, model: Any) -> int:
        with self.db() as db:
            return int(db.scalar(select(func.count()).select_from(model)) or 0)

    def nothing_moved(self, no: str) -> None:
        """No payment, no start command, no refund: the order is as it was made."""
        assert self.count(Payment) == 0
        assert self.count(Command) == 0
        assert self.count(Refund) == 0
        with self.db() as db:
            order = db.get(Order, no)
            assert order is not None
            assert (order.status, order.paid_fen, order.command_id) == ("created", 0, None)

    async def money_conserved(self, no: str) -> dict[str, Any]:
        """paid = billed + refunded, to the fen, here and at the provider."""
        view = await self.view(no)
        receipt = view["receipt"]
        assert receipt is not None, view
        assert view["paid_fen"] == receipt["billed_fen"] + receipt["refund_fen"], view
        provider = self.sim.orders[no]
        refunded = sum(
            r.refund_fen
            for r in self.sim.refunds.values()
            if r.out_trade_no == no and r.status == "SUCCESS"
        )
        if receipt["refund_status"] == "success":
            assert refunded == receipt["refund_fen"]
            assert provider.amount_fen == receipt["billed_fen"] + refunded
        with self.db() as db:
            order = db.get(Order, no)
            assert order is not None
            assert order.billed_fen is not None
            assert order.paid_fen == order.billed_fen + order.refund_fen
        return view


@asynccontextmanager
async def pay_env(
    db_url: str,
    *,
    sim_options: dict[str, Any] | None = None,
    credentials: Path | None = None,
    merchant: WechatPaySettings = MERCHANT,
    **overrides: Any,
) -> AsyncIterator[PayEnv]:
    """API + provider + gateway, all over HTTP on free ports; torn down fully.

    With `credentials` (a folder), the API is wired as a demo would be: the
    simulator writes its credentials there and the app builds its own gateway
    from `pay_credentials_dir`."""
    from tests.api_db import ADMIN_TOKEN, FakeClock, api_settings, bearer

    clock = FakeClock()
    seconds = lambda: clock.now / 1000  # noqa: E731 - one clock for all three
    options: dict[str, Any] = {"time_scale": SCALE, "seed": 1}
    options.update(sim_options or {})
    sim = PaymentProviderSimulator(ACCOUNT, clock=seconds, **options)
    late = LateApp()
    server = LocalServer(late)
    await asyncio.gather(sim.start(), server.start())
    pay = dataclasses.replace(merchant, base_url=sim.url)

    async def no_sleep(_s: float) -> None:
        await asyncio.sleep(0)

    try:
        async with (
            httpx.AsyncClient(timeout=10, verify=TLS) as to_provider,
            WechatPayV3Gateway(pay, client=to_provider, clock=seconds, sleep=no_sleep) as gateway,
        ):
            values: dict[str, Any] = {
                "public_base_url": server.url,
                "pay_workers": False,
                "dev_endpoints": True,
            }
            values.update(overrides)
            if credentials is not None:
                write_credentials(sim, credentials)
                values["pay_credentials_dir"] = credentials
            settings = api_settings(db_url, **values)
            injected = None if credentials is not None else gateway
            app = create_app(settings, now_ms=clock, gateway=injected)
            late.app = app
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(base_url=server.url, timeout=10, verify=TLS) as http,
            ):
                yield PayEnv(app, http, server.url, clock, sim, gateway, bearer(ADMIN_TOKEN))
                await sim.wait_idle()
    finally:
        await asyncio.gather(server.stop(), sim.stop())
