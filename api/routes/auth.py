"""Residents' SMS login: a one-time code by (simulated) SMS, then a session cookie."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Depends, Query, Request, Response

from api.deps import AddressDep, CtxDep, DbDep
from api.errors import ApiError, Invalid, NotFound, Unauthorized
from api.models import User
from api.routes.staff_auth import login_rates
from api.schemas.orders import PHONE_PATTERN
from api.schemas.orders_auth import LoginAnswer, LoginIn, SmsIn, SmsSent, SmsView
from api.services.sms import (
    OutboxSmsSender,
    SmsSender,
    TooManyRequests,
    check_login_code,
    code_in,
    outbox,
    send_login_code,
)
from api.services.sms_login import (
    COOKIE_NAME,
    close_session,
    open_session,
    user_for_phone,
    user_for_token,
)
from api.services.throttle import Rate, hit, rate_key

router = APIRouter(tags=["residents"])
HOUR_MS = 3_600_000


def _token(request: Request) -> str | None:
    token = request.cookies.get(COOKIE_NAME)
    if token:
        return token
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def current_resident(request: Request, ctx: CtxDep) -> User | None:
    """The logged-in resident (session cookie or `Authorization: Bearer`), if any."""
    token = _token(request)
    if token is None:
        return None
    with ctx.sessions() as db:
        return user_for_token(db, token, now_ms=ctx.now_ms())


ResidentDep = Annotated[User | None, Depends(current_resident)]


def required_resident(user: ResidentDep) -> User:
    if user is None:
        raise Unauthorized("log in first (POST /api/v1/auth/sms, then /api/v1/auth/login)")
    return user


LoggedInDep = Annotated[User, Depends(required_resident)]


def _sender(request: Request) -> SmsSender:
    return cast(SmsSender, getattr(request.app.state, "sms_sender", None) or OutboxSmsSender())


@router.post(
    "/auth/sms",
    status_code=202,
    responses={429: {"description": "sms_too_soon, sms_daily_limit, rate_limited"}},
)
def send_code(
    body: SmsIn, request: Request, db: DbDep, ctx: CtxDep, address: AddressDep
) -> SmsSent:
    """Send a 6-digit one-time code to the phone (at most one a minute, a few a day;
    a few an hour from one address, and a bound for all clients: 429 rate_limited)."""
    now, settings = ctx.now_ms(), ctx.settings
    with db.begin():
        rates = {rate_key("sms", "api"): Rate(settings.sms_per_hour, HOUR_MS)}
        if settings.limit_by_address:
            rates[rate_key("sms", "address", address)] = Rate(
                settings.sms_per_address_per_hour, HOUR_MS
            )
        hit(db, rates, now)
        sent = send_login_code(
            db, body.phone, now_ms=ctx.now_ms(), settings=ctx.settings, sender=_sender(request)
        )
    return SmsSent(sent=True, expires_in_s=sent.expires_in_s, resend_after_s=sent.resend_after_s)


@router.post("/auth/login", responses={429: {"description": "too many wrong codes"}})
def login(
    body: LoginIn, response: Response, db: DbDep, ctx: CtxDep, address: AddressDep
) -> LoginAnswer:
    """Log in with the code: sets the httpOnly session cookie and returns the token."""
    now = ctx.now_ms()
    with db.begin():  # a wrong try is counted even though we answer an error
        hit(db, login_rates(ctx.settings, address), now)
        result = check_login_code(db, body.phone, body.code, now_ms=now, settings=ctx.settings)
        if result == "ok":
            user = user_for_phone(db, body.phone, now_ms=now)
            token, expires_ms = open_session(
                db, user, now_ms=now, days=ctx.settings.login_session_days
            )
    if result == "too_many_attempts":
        raise TooManyRequests("too many wrong codes; ask for a new one", code="too_many_attempts")
    if result == "no_code":
        raise Invalid("no valid code for this phone; ask for one", code="no_code")
    if result == "wrong":
        raise ApiError("wrong code", code="wrong_code", status=400)
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=ctx.settings.login_session_days * 86_400,
        httponly=True,
        secure=ctx.settings.cookie_secure,
        samesite="lax",
        path="/",
    )
    return LoginAnswer(token=token, phone=body.phone, expires_ms=expires_ms)


@router.post("/auth/logout", status_code=204)
def logout(request: Request, db: DbDep) -> Response:
    """End this login and clear the cookie."""
    token = _token(request)
    if token is not None:
        with db.begin():
            close_session(db, token)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


@router.get("/dev/sms", include_in_schema=False)
def dev_sms(
    db: DbDep,
    ctx: CtxDep,
    phone: Annotated[str | None, Query(pattern=PHONE_PATTERN)] = None,
) -> list[SmsView]:
    """The simulated SMS outbox, newest first (only with EBSHED_API_DEV_ENDPOINTS=true)."""
    if not ctx.settings.dev_endpoints:
        raise NotFound("not found")
    return [
        SmsView(phone=m.phone, text=m.text, created_ms=m.created_ms, code=code_in(m.text))
        for m in outbox(db, phone)
    ]
