"""The central side of the demo: the central API and the payment provider
simulator, served over real HTTP on free ports inside the demo's process.

- The API is the real app (`api.main.create_app`) on SQLite in the demo's
  data folder, with the real payments-v1 gateway, built from the credentials
  the provider simulator writes (as an operator would configure it).
- Everything runs on the demo's clock: signatures, order expiry, the start
  timeout and the session records all tell the same time. Timeouts that a
  person in front of a browser must beat (pay before the order expires, type
  the SMS code) are stretched by the demo's speed so that they last about as
  long in real time as they do in production.
- At `--speed max` nothing runs by itself: `step()` moves everything that is
  due (the provider's notifications and refunds, the shed's commands and
  uplink, the API's payment workers) until nothing moves, so a simulated day
  stays reproducible. At a live speed the API's workers, the shed's uplink and
  its long poll run on their own, as in production.
"""

from __future__ import annotations

import contextlib
import random
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
from pydantic import SecretStr
from sqlalchemy import func, select

from api.main import create_app
from api.models import DemandEvent, Order, Refund
from api.repos import compounds, sheds
from api.schemas.sheds import BayIn
from api.services import accounts
from api.services.accounts import GrantSpec
from api.services.orders_workers import OrdersRuntime
from api.services.registration import register_compound, register_shed, rotate_shed_token
from api.settings import ApiSettings
from controller.clock import Clock
from simulators import demo_money
from simulators import payment_wire as wire
from simulators.payment_provider import PaymentProviderSimulator, write_credentials
from simulators.payment_server import LateApp, LocalServer

COMPOUND: Final = ("demo", "示范小区")
DEMO_USERS: Final = (("staff", "物业值班员", "staff"), ("office", "社区居委会", "office"))
PASSWORD_ALPHABET: Final = "abcdefghijkmnpqrstuvwxyz23456789"
# Order states after which nothing more happens to the money.
SETTLED: Final = ("closed", "refunded", "failed", "expired")
MAX_STEP_ROUNDS: Final = 50
POLL_EVERY_MS: Final = 20_000
WORKERS_EVERY_MS: Final = 10_000
UPLINK_EVERY_MS: Final = 30_000


@dataclass(frozen=True)
class ShedSpec:
    id: str
    name: str
    ports: list[int]
    bays: dict[int, int | None]  # bay -> the socket next to it


def api_settings_for_demo(
    data_dir: Path, url: str, speed: float | None, admin_token: str
) -> ApiSettings:
    """`speed`: simulated seconds per real second; None at --speed max."""
    stretch = max(1.0, speed or 1.0)

    def seconds(base: float, most: int) -> int:
        return int(min(most, base * stretch))

    return ApiSettings(
        database_url=f"sqlite:///{data_dir / 'central.sqlite'}",
        admin_token=SecretStr(admin_token),
        public_base_url=url,
        pay_credentials_dir=data_dir / "pay",
        pay_workers=speed is not None,
        dev_endpoints=True,  # the simulated SMS outbox, for logging in on the demo
        cookie_secure=False,
        # Every simulated phone calls from this machine's address: count them by
        # phone and device, not by address.
        limit_by_address=False,
        order_hold_s=seconds(90, 120),
        # at 60x, 30 s of simulated time pass in half a real second
        start_timeout_s=seconds(30, 600),
        order_expire_s=seconds(600, 7200),
        sms_code_ttl_s=seconds(300, 3600),
        sms_resend_after_s=seconds(60, 3600) if speed is not None else 0,
        # live snapshots come every 30 simulated seconds at 60x: stale after 30 real ones
        board_live_stale_s=seconds(30, 3600),
    )


class DemoCentral:
    """The central API and the provider, and the shed registered with them."""

    def __init__(self, clock: Clock, data_dir: Path, rng: random.Random,
                 speed: float | None) -> None:
        self.clock = clock
        self.data_dir = data_dir
        self.speed = speed
        seconds = lambda: clock.now_ms() / 1000  # noqa: E731 - one clock for everything
        self.admin_token = secrets.token_urlsafe(24)
        self.provider = PaymentProviderSimulator(
            wire.ProviderAccount.generate(rng=rng),
            clock=seconds,
            # provider delays (refund settlement, resends) at the demo's pace;
            # at max speed they take a few real milliseconds
            time_scale=speed or 1000.0,
            seed=rng.randrange(2**32),
        )
        self._late = LateApp()
        self.server = LocalServer(self._late)
        self.app: Any = None
        self.http: httpx.AsyncClient | None = None  # residents' phones, to the API
        self._poked = True
        self._notified = 0
        self._polled_ms = self._workers_ms = self._sent_ms = 0

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def orders(self) -> OrdersRuntime:
        runtime = self.app.state.ctx.orders
        assert isinstance(runtime, OrdersRuntime)
        return runtime

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[DemoCentral]:
        async with contextlib.AsyncExitStack() as stack:
            await self.provider.start()
            stack.push_async_callback(self.provider.stop)
            await self.server.start()
            stack.push_async_callback(self.server.stop)
            self.provider.return_url = f"{self.url}/o/{{out_trade_no}}"
            write_credentials(self.provider, self.data_dir / "pay")
            settings = api_settings_for_demo(self.data_dir, self.url, self.speed,
                                             self.admin_token)
            self.app = create_app(settings, now_ms=self.clock.now_ms)
            self._late.app = self.app
            await stack.enter_async_context(self.app.router.lifespan_context(self.app))
            self.http = await stack.enter_async_context(
                httpx.AsyncClient(base_url=self.url, timeout=30))
            yield self

    def register(self, shed: ShedSpec) -> str:
        """Register the compound and the shed (again: a new token); returns the token."""
        now = self.clock.now_ms()
        with self.app.state.ctx.sessions.begin() as db:
            if compounds.get_compound(db, COMPOUND[0]) is None:
                register_compound(db, COMPOUND[0], COMPOUND[1], now_ms=now)
            if sheds.get_shed(db, shed.id) is not None:
                return rotate_shed_token(db, shed.id)
            bays = [BayIn(number=n, port=p) for n, p in sorted(shed.bays.items())]
            registered = register_shed(db, shed.id, shed.name, COMPOUND[0], now_ms=now,
                                       ports=shed.ports, bays=bays)
            demo_money.seed(db, COMPOUND[0], now_ms=now)  # its money page, a consultation
            return registered.token

    def demo_users(self) -> dict[str, str]:
        """A staff member and a community office user of the demo compound, with
        new passwords on every run; returns login -> password (to print)."""
        made: dict[str, str] = {}
        now = self.clock.now_ms()
        with self.app.state.ctx.sessions.begin() as db:
            for login, name, role in DEMO_USERS:
                password = "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(12))
                user = accounts.user_by_login(db, login)
                if user is None:
                    accounts.create_user(db, login=login, name=name, password=password,
                                         grants=[GrantSpec(role, COMPOUND[0])], now_ms=now)
                else:  # a kept data folder: same user, a new password
                    accounts.set_password(db, user, password)
                made[login] = password
        return made

    # --- stepping at --speed max ------------------------------------------------

    def poke(self) -> None:
        """Something may have queued a command for the shed (a resident paid or
        pressed stop): the next step polls for it at once."""
        self._poked = True

    async def step(self, link: Any) -> int:
        """One round of everything that is due; returns how much moved.

        `link` is the controller's `(Uplink, CommandPoller)`. What a real shed
        does on its own is done here when it can matter: the command poll when
        a resident or the payment workers may have queued a command (and every
        `POLL_EVERY_MS` anyway, as a real shed re-polls and so stays online),
        the uplink when the outbox has records (at most every `UPLINK_EVERY_MS`
        unless a command was just carried out), the payment workers after
        anything moved (a closed session owes a refund) and every
        `WORKERS_EVERY_MS` (expiry, the start timeout)."""
        uplink, poller = link
        now = self.clock.now_ms()
        await self.provider.wait_idle()
        notified = len(self.provider.notification_attempts)
        moved = 0
        if self._poked or notified != self._notified or now - self._polled_ms >= POLL_EVERY_MS:
            self._poked, self._notified, self._polled_ms = False, notified, now
            moved += int(await poller.poll_once(wait_s=0))
        if uplink.wake.is_set() and (moved or now - self._sent_ms >= UPLINK_EVERY_MS):
            uplink.wake.clear()
            self._sent_ms = now
            while sent := await uplink.send_once():
                moved += sent
        if moved or now - self._workers_ms >= WORKERS_EVERY_MS:
            self._workers_ms = now
            work = sum((await self.orders.run_once()).values())
            self._poked = self._poked or work > 0
            moved += work
        return moved

    async def settle(self, link: Any, barrier: Any, *, new_cycle: bool = True) -> None:
        """Step until neither the central side nor the devices move any more.

        `barrier` is the demo's device barrier (`simulators.demo.Barrier`);
        `new_cycle`: the clock has moved since the last settle."""
        await barrier.settle(new_cycle=new_cycle)
        for _ in range(MAX_STEP_ROUNDS):
            if not await self.step(link):
                return
            await barrier.settle(new_cycle=False)

    # --- the books ----------------------------------------------------------------

    def open_orders(self) -> int:
        """Paid orders whose money is not settled yet (charging, refunding, ...)."""
        with self.app.state.ctx.sessions() as db:
            return int(db.scalar(
                select(func.count()).select_from(Order)
                .where(Order.paid_fen > 0, Order.status.not_in(SETTLED))) or 0)

    def money(self) -> dict[str, Any]:
        """Scan-to-pay orders only: paid = billed + refunded, to the fen; and the
        unserved demand the API recorded, by source (scan, card)."""
        with self.app.state.ctx.sessions() as db:
            paid = list(db.scalars(select(Order).where(Order.paid_fen > 0)))
            refunds = list(db.scalars(select(Refund)))
            demand: dict[str, int] = dict(db.execute(
                select(DemandEvent.source, func.count()).group_by(DemandEvent.source)).all())
        refunded = sum(r.amount_fen for r in refunds if r.status == "success")
        at_provider = sum(r.refund_fen for r in self.provider.refunds.values()
                          if r.status == "SUCCESS")
        return {
            "demand_recorded": demand,
            "orders_paid": len(paid),
            "paid_fen": sum(o.paid_fen for o in paid),
            "orders_billed_fen": sum(o.billed_fen or 0 for o in paid),
            "refunded_fen": refunded,
            "refunds_failed": sum(1 for r in refunds
                                  if r.status in ("failed", "abnormal", "closed")),
            "orders_by_status": dict(sorted(
                {s: sum(1 for o in paid if o.status == s) for s in {o.status for o in paid}}
                .items())),
            "provider_refunded_fen": at_provider,
        }
