"""The scan-to-pay runtime: the payment gateway, and the workers that talk to
the provider after the database has decided (docs/scan-to-pay.md).

- `RefundSender`: sends pending refunds (same `out_refund_no` on every
  retry, so at most one refund per order), and queries refunds still
  PROCESSING when their notification does not come.
- `OrderSettler`: unpaid orders past their expiry, and orders that gave way to
  a re-scan: asks the provider first (payments-v1 rule 5: a payment whose
  notification was lost is applied as if notified), then closes them there.
- `StartTimeouts`: a paid start with no result from the shed within
  `start_timeout_s` is refunded in full.

Each has `await run_once()` (one step, for tests); `OrdersRuntime.start()`
runs them all in the app's lifespan every `pay_worker_interval_ms`, and at
once when a transaction that owes a refund commits. The clock is the app's.
Several API workers may run them at once: every change is made under the
order's or the refund's row lock and re-checked there, and every provider
call is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from functools import partial
from typing import Any, Final, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.clock import NowMs
from api.errors import ApiError
from api.payments import (
    InvalidRequest,
    OrderNotFound,
    PaymentError,
    PaymentGateway,
    ProviderRejected,
    RefundResult,
    TradeState,
)
from api.repos import orders as order_repo
from api.services import refunds
from api.services.orders_payments import apply_paid_query, check_start_timeout
from api.settings import ApiSettings

log = logging.getLogger(__name__)

_RUNTIME_KEY: Final = "ebshed.orders_runtime"
BATCH: Final = 50
QUERY_RETRY_MS: Final = 30_000
T = TypeVar("T")


class PaymentsDisabled(ApiError):
    status, code = 503, "payments_disabled"


class OrdersRuntime:
    """Built by `create_app`; on `app.state.ctx.orders`."""

    def __init__(
        self,
        settings: ApiSettings,
        sessions: sessionmaker[Session],
        now_ms: NowMs,
        gateway: PaymentGateway | None,
        *,
        own_gateway: bool = False,
        pay_page_base: str | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.now_ms = now_ms
        self._gateway = gateway
        self._own_gateway = own_gateway
        if pay_page_base is None:  # an injected adapter knows its provider's address
            pay_page_base = settings.pay_base_url or getattr(
                getattr(gateway, "settings", None), "base_url", None
            )
        self.pay_page_base = pay_page_base.rstrip("/") if pay_page_base else None
        self.notify_url = (
            settings.pay_notify_url
            or f"{settings.public_base_url.rstrip('/')}/pay/notify/wechatpay"
        )
        self.refund_sender = RefundSender(self)
        self.settler = OrderSettler(self)
        self.start_timeouts = StartTimeouts(self)
        self._kick: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        sessions.configure(info={**sessions.kw.get("info", {}), _RUNTIME_KEY: self})
        event.listen(sessions, "after_commit", _after_commit)
        event.listen(sessions, "after_soft_rollback", _after_rollback)

    # --- the gateway -------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self._gateway is not None

    @property
    def gateway(self) -> PaymentGateway:
        if self._gateway is None:
            raise PaymentsDisabled(
                "payments are not configured (EBSHED_API_PAY_BASE_URL and the keys)"
            )
        return self._gateway

    def pay_url(self, out_trade_no: str, code_url: str | None) -> str | None:
        """The provider's pay page for an order (what the resident's phone opens)."""
        template = self.settings.pay_page_url
        if template:
            return template.replace("{out_trade_no}", out_trade_no)
        if code_url is not None and code_url.startswith(("http://", "https://")):
            return code_url
        if self.pay_page_base is not None:
            return f"{self.pay_page_base}/pay/{out_trade_no}"
        return None

    # --- database helper ---------------------------------------------------------

    async def txn(self, fn: Callable[[Session], T]) -> T:
        """Run `fn(db)` in one transaction, in a worker thread."""

        def run() -> T:
            with self.sessions.begin() as db:
                return fn(db)

        return await run_in_threadpool(run)

    # --- life cycle --------------------------------------------------------------

    def kick(self) -> None:
        """Run the workers soon (safe from any thread)."""
        loop, kick = self._loop, self._kick
        if loop is None or kick is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(kick.set)

    async def run_once(self) -> dict[str, int]:
        """One step of every worker; how much each did."""
        return {
            "start_timeouts": await self.start_timeouts.run_once(),
            "refunds": await self.refund_sender.run_once(),
            "settled": await self.settler.run_once(),
        }

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._kick = asyncio.Event()
        if self.settings.pay_workers:
            self._task = asyncio.create_task(self._run(), name="payment-workers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._loop = None
        if self._own_gateway and self._gateway is not None:
            aclose: Any = getattr(self._gateway, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _run(self) -> None:
        assert self._kick is not None
        interval = self.settings.pay_worker_interval_ms / 1000
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), interval)
            self._kick.clear()
            try:
                await self.run_once()
            except Exception:  # a database or provider hiccup must not end the loop
                log.exception("payment workers: step failed; next step in %.1f s", interval)


def _after_commit(db: Session) -> None:
    if db.info.pop(refunds.KICK_KEY, None):
        runtime = db.info.get(_RUNTIME_KEY)
        if isinstance(runtime, OrdersRuntime):
            runtime.kick()


def _after_rollback(db: Session, _previous: Any) -> None:
    if not db.in_transaction():
        db.info.pop(refunds.KICK_KEY, None)


# ---------------------------------------------------------------- workers


class RefundSender:
    def __init__(self, runtime: OrdersRuntime) -> None:
        self.rt = runtime

    async def run_once(self) -> int:
        """Send every due pending refund, query every due processing one."""
        if not self.rt.enabled:
            return 0
        now = self.rt.now_ms()
        pending = await self.rt.txn(lambda db: order_repo.refunds_due(db, "pending", now, BATCH))
        for no in pending:
            await self.send(no)
        processing = await self.rt.txn(
            lambda db: order_repo.refunds_due(db, "processing", now, BATCH)
        )
        for no in processing:
            await self.query(no)
        return len(pending) + len(processing)

    async def send(self, out_refund_no: str) -> None:
        def load(db: Session) -> tuple[str, int, int] | None:
            refund = order_repo.get_refund(db, out_refund_no)
            if refund is None or refund.status != "pending":
                return None
            order = order_repo.get_order(db, refund.out_trade_no)
            assert order is not None
            return refund.out_trade_no, refund.amount_fen, order.amount_fen

        loaded = await self.rt.txn(load)
        if loaded is None:
            return
        out_trade_no, amount, total = loaded
        try:
            result = await self.rt.gateway.refund(out_trade_no, out_refund_no, amount, total)
        except (ProviderRejected, InvalidRequest) as err:
            await self._failed(out_refund_no, err)
        except PaymentError as err:  # unavailable, or an answer we cannot trust: retry
            await self._retry(out_refund_no, err)
        else:
            await self._apply(out_refund_no, result)

    async def query(self, out_refund_no: str) -> None:
        query_refund: Any = getattr(self.rt.gateway, "query_refund", None)
        if query_refund is None:  # a gateway without refund queries: wait for the notification
            return
        try:
            result = await query_refund(out_refund_no)
        except PaymentError as err:
            await self._retry(out_refund_no, err, status="processing")
            return
        await self._apply(out_refund_no, result)

    async def _apply(self, out_refund_no: str, result: RefundResult) -> None:
        now = self.rt.now_ms()
        query_after_ms = self.rt.settings.refund_query_after_s * 1000

        def apply(db: Session) -> None:
            refund = order_repo.get_refund(db, out_refund_no, lock=True)
            if refund is None:
                return
            outcome = refunds.apply_refund_status(
                db, refund, result.status, now_ms=now, refund_id=result.refund_id,
                query_after_ms=query_after_ms,
            )  # fmt: skip
            if outcome == "duplicate" and refund.status == "processing":
                refund.next_attempt_ms = now + query_after_ms  # still processing: ask later

        await self.rt.txn(apply)

    async def _retry(self, out_refund_no: str, err: PaymentError, status: str = "pending") -> None:
        now = self.rt.now_ms()
        log.warning("refund %s: %s; will retry", out_refund_no, err)

        def later(db: Session) -> None:
            refund = order_repo.get_refund(db, out_refund_no, lock=True)
            if refund is not None and refund.status == status:
                refunds.retry_later(refund, f"{err.code}: {err.detail}", now)

        await self.rt.txn(later)

    async def _failed(self, out_refund_no: str, err: PaymentError) -> None:
        now = self.rt.now_ms()
        detail = (
            f"{err.provider_code}: {err.provider_message}"
            if isinstance(err, ProviderRejected)
            else f"{err.code}: {err.detail}"
        )

        def fail(db: Session) -> None:
            refund = order_repo.get_refund(db, out_refund_no, lock=True)
            if refund is not None and refund.status == "pending":
                refund.attempts += 1
                refunds.mark_failed(db, refund, "failed", detail, now)

        await self.rt.txn(fail)


class OrderSettler:
    """Unpaid orders at their end: query first, then close at the provider."""

    def __init__(self, runtime: OrdersRuntime) -> None:
        self.rt = runtime

    async def run_once(self) -> int:
        if not self.rt.enabled:
            return 0
        now = self.rt.now_ms()

        def due(db: Session) -> list[str]:
            found = list(
                order_repo.orders_to_settle_with_provider(db, now, now - QUERY_RETRY_MS, BATCH)
            )
            for no in found:  # one worker at a time per order, one ask per QUERY_RETRY_MS
                order = order_repo.get_order(db, no, lock=True)
                if order is not None:
                    order.queried_ms = now
            return found

        found = await self.rt.txn(due)
        for no in found:
            await self.settle(no)
        return len(found)

    async def settle(self, out_trade_no: str) -> None:
        gateway = self.rt.gateway
        try:
            query = await gateway.query_order(out_trade_no)
        except OrderNotFound:
            await self._closed(out_trade_no)  # the provider never had it
            return
        except PaymentError as err:
            log.warning("order %s: query failed (%s); asking again later", out_trade_no, err)
            return
        if query.trade_state is TradeState.SUCCESS:
            now = self.rt.now_ms()
            settings = self.rt.settings
            await self.rt.txn(lambda db: apply_paid_query(db, query, now_ms=now, settings=settings))
            return
        if query.trade_state in (TradeState.CLOSED, TradeState.REVOKED):
            await self._closed(out_trade_no)
            return
        if query.trade_state is TradeState.REFUND:
            log.error("order %s: the provider says REFUND for an order we never saw paid",
                      out_trade_no)  # fmt: skip
            return
        try:
            await gateway.close_order(out_trade_no)
        except PaymentError as err:  # ORDERPAID: the next query applies the payment
            log.warning("order %s: close failed (%s); asking again later", out_trade_no, err)
            return
        await self._closed(out_trade_no)

    async def _closed(self, out_trade_no: str) -> None:
        now = self.rt.now_ms()

        def closed(db: Session) -> None:
            order = order_repo.get_order(db, out_trade_no, lock=True)
            if order is None or order.status not in ("created", "expired"):
                return
            order.status = "expired"
            order.problem = order.problem or "not_paid"
            order.provider_closed_ms = now
            order.closed_ms = order.closed_ms or now
            order.updated_ms = now

        await self.rt.txn(closed)


class StartTimeouts:
    def __init__(self, runtime: OrdersRuntime) -> None:
        self.rt = runtime

    async def run_once(self) -> int:
        now = self.rt.now_ms()
        timeout_ms = self.rt.settings.start_timeout_s * 1000
        found = await self.rt.txn(
            lambda db: order_repo.starting_orders_paid_before(db, now - timeout_ms, BATCH)
        )
        refunded = 0
        for no in found:
            check = partial(check_start_timeout, out_trade_no=no, now_ms=now, timeout_ms=timeout_ms)
            refunded += int(await self.rt.txn(check))
        return refunded
