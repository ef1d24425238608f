"""Scan-to-pay orders (docs/scan-to-pay.md): make one, watch it, stop it; and a
resident's own orders. The order number is what lets a phone see and stop its
order: it is random and not guessable."""

from __future__ import annotations

import hashlib
import re
import secrets
from functools import partial
from typing import Annotated, Final

from fastapi import APIRouter, Path, Request, Response

from api.deps import AddressDep, CtxDep, DbDep
from api.errors import ApiError, Invalid
from api.payments import BadProviderResponse, PaymentError, ProviderRejected
from api.repos import orders as order_repo
from api.routes.auth import LoggedInDep, ResidentDep
from api.schemas.orders import MySessions, OrderCreated, OrderIn, OrderView, StopAnswer
from api.services.orders import (
    Client,
    get_order,
    order_created,
    order_view,
    provider_create_failed,
    reserve_order,
    stop_order,
    store_code_url,
    time_expire,
)
from api.services.orders_workers import OrdersRuntime
from api.services.throttle import Rate, hit, rate_key

router = APIRouter(tags=["residents"])

TradeNoPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{6,32}$", description="out_trade_no")]
MY_ORDERS_LIMIT = 50
MIN_MS: Final = 60_000
# A random id the API gives each phone's browser (or app) at its first order,
# so that one device counts as one client whatever phone numbers it types.
DEVICE_COOKIE: Final = "ebshed_device"
DEVICE_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{16,64}")


class ProviderFailed(ApiError):
    status, code = 503, "provider_unavailable"


def runtime(ctx: CtxDep) -> OrdersRuntime:
    assert ctx.orders is not None, "create_app builds the orders runtime"
    return ctx.orders


@router.post(
    "/orders",
    status_code=201,
    responses={
        200: {"description": "this phone's open order, reused", "model": OrderCreated},
        409: {"description": "socket_taken, or why the socket cannot be paid for "
              "(busy, fault, offline, disabled, shed_offline)"},
        429: {"description": "too_many_unpaid, rate_limited"},
        502: {"description": "provider_rejected; bad_response_signature (the provider's "
              "answer is not signed by its key), bad_response (it cannot be read)"},
        503: {"description": "payments_disabled, provider_unavailable"},
    },
)  # fmt: skip
async def create_order(
    body: OrderIn,
    ctx: CtxDep,
    user: ResidentDep,
    request: Request,
    response: Response,
    address: AddressDep,
) -> OrderCreated:
    """Make an order for a socket and create it at the provider. A second scan
    by the same phone while its order is unpaid gets the same order (200).
    An unpaid order holds the socket `order_hold_s` at most; a client (phone,
    address, device cookie) holds at most `order_unpaid_per_client` of them
    (429 too_many_unpaid); creations are rate-limited (429 rate_limited)."""
    rt = runtime(ctx)
    gateway = rt.gateway  # 503 payments_disabled before anything is written
    phone = body.phone or (user.phone if user is not None else None)
    if phone is None:
        raise Invalid("phone is required (or log in first)", code="phone_required")
    user_id = user.id if user is not None and user.phone == phone else None
    now, settings = ctx.now_ms(), ctx.settings
    rates = {
        rate_key("orders", "phone", phone): Rate(settings.orders_per_phone_per_min, MIN_MS),
        rate_key("orders", "api"): Rate(settings.orders_per_min, MIN_MS),
    }
    if settings.limit_by_address:
        rates[rate_key("orders", "address", address)] = Rate(
            settings.orders_per_address_per_min, MIN_MS
        )
    await rt.txn(lambda db: hit(db, rates, now))
    device = request.cookies.get(DEVICE_COOKIE, "")
    if not DEVICE_TOKEN.fullmatch(device):
        device = secrets.token_urlsafe(18)
        response.set_cookie(DEVICE_COOKIE, device, max_age=365 * 86_400, httponly=True,
                            secure=settings.cookie_secure, samesite="lax", path="/")  # fmt: skip
    client = Client(
        address if settings.limit_by_address else None,
        hashlib.sha256(device.encode()).hexdigest()[:32],
    )
    reserve = partial(
        reserve_order, body=body, phone=phone, user_id=user_id, now_ms=now, settings=settings,
        client=client,
    )  # fmt: skip
    reserved = await rt.txn(reserve)
    if reserved.superseded:
        rt.kick()  # close them at the provider
    order = reserved.order
    no = order.out_trade_no
    code_url = order.code_url
    if code_url is None:
        try:
            code_url = await gateway.create_order(
                no, reserved.description, order.amount_fen, time_expire(order), rt.notify_url
            )
        except PaymentError as err:
            await rt.txn(lambda db: provider_create_failed(db, no, ctx.now_ms()))
            if isinstance(err, ProviderRejected):
                raise ProviderFailed(
                    f"the payment provider refused the order: {err.provider_code}",
                    code="provider_rejected",
                    status=502,
                ) from err
            if isinstance(err, BadProviderResponse):  # it answered, but not in a way we trust
                raise ProviderFailed(
                    f"the payment provider's answer failed its check: {err.code}",
                    code=err.code,  # bad_response_signature or bad_response
                    status=502,
                ) from err
            raise ProviderFailed(f"the payment provider cannot be reached: {err.code}") from err
        stored = await rt.txn(lambda db: store_code_url(db, no, code_url, ctx.now_ms()))
        order = stored or order
    response.status_code = 201 if reserved.created else 200
    return order_created(order, rt.pay_url(no, code_url))


@router.get("/orders/{out_trade_no}")
def get_order_view(out_trade_no: TradeNoPath, db: DbDep, ctx: CtxDep) -> OrderView:
    """The order, its live session (power, energy, minutes, cost so far) and, once
    settled, the receipt: the shed's bill lines, what was billed and refunded."""
    order = get_order(db, out_trade_no)
    pay_url = runtime(ctx).pay_url(order.out_trade_no, order.code_url)
    return order_view(db, order, now_ms=ctx.now_ms(), pay_url=pay_url)


@router.post("/orders/{out_trade_no}/stop", status_code=202)
def stop(out_trade_no: TradeNoPath, db: DbDep, ctx: CtxDep) -> StopAnswer:
    """Stop charging now (only while the order's session runs): queues a
    stop_session for its socket; the bill and refund follow when it closes."""
    with db.begin():
        command = stop_order(db, out_trade_no, now_ms=ctx.now_ms())
        return StopAnswer(out_trade_no=out_trade_no, command_id=command.id)


@router.get("/me/sessions")
def my_sessions(user: LoggedInDep, db: DbDep, ctx: CtxDep) -> MySessions:
    """The logged-in resident's own paid orders with their sessions and receipts."""
    if user.phone is None:  # a password login (staff): no phone, so no orders of their own
        return MySessions(phone="", orders=[])
    now = ctx.now_ms()
    rt = runtime(ctx)
    orders = order_repo.orders_of(db, user.phone, user.id, MY_ORDERS_LIMIT)
    return MySessions(
        phone=user.phone,
        orders=[
            order_view(db, o, now_ms=now, pay_url=rt.pay_url(o.out_trade_no, o.code_url))
            for o in orders
        ],
    )
