"""Password login for staff, office and admin users (residents log in by SMS,
api/routes/auth.py; both end with POST /api/v1/auth/logout)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.access import Principal, PrincipalDep, principal_for_user
from api.deps import CtxDep, DbDep
from api.errors import ApiError, Unauthorized
from api.schemas.accounts import GrantView, PasswordLoginAnswer, PasswordLoginIn, WhoAmI
from api.services.accounts import LoggedIn, LoginLimits, password_login
from api.services.sms_login import COOKIE_NAME
from api.services.throttle import Backoff, Rate, rate_key
from api.settings import ApiSettings

router = APIRouter(tags=["accounts"])


class TooManyAttempts(ApiError):
    status, code = 429, "too_many_attempts"


def login_limits(settings: ApiSettings, address: str) -> LoginLimits:
    return LoginLimits(
        backoff=Backoff(
            free=settings.login_failures_per_name,
            per_address=settings.login_failures_per_address,
            per_name=settings.login_failures_per_name_total,
            window_ms=settings.login_failure_window_s * 1000,
            first_ms=settings.login_backoff_ms,
            most_ms=settings.login_lockout_s * 1000,
        ),
        rates=login_rates(settings, address),
        session_hours=settings.staff_session_hours,
    )


def login_rates(settings: ApiSettings, address: str) -> dict[str, Rate]:
    """Login attempts (password or SMS code) per address and for all clients."""
    rates = {rate_key("logins", "api"): Rate(settings.logins_per_min, 60_000)}
    if settings.limit_by_address:
        rates[rate_key("logins", "address", address)] = Rate(
            settings.logins_per_address_per_min, 60_000
        )
    return rates


def set_login_cookie(response: Response, token: str, settings: ApiSettings) -> None:
    """The session cookie of a password login (httpOnly, SameSite=Lax)."""
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=settings.staff_session_hours * 3600,
        httponly=True,
        secure=settings.cookie_secure,
        samesite="lax",
        path="/",
    )


def who(principal: Principal) -> WhoAmI:
    grants = sorted(principal.grants, key=lambda g: (g.role, g.compound_id or ""))
    return WhoAmI(
        user_id=principal.user_id,
        login=principal.login,
        name=principal.name,
        grants=[GrantView.model_validate(g) for g in grants],
        home=principal.home(),
    )


@router.post(
    "/auth/password",
    responses={
        401: {"description": "unknown login or wrong password (bad_credentials)"},
        429: {"description": "too many failed logins (too_many_attempts)"},
    },
)
def login(
    body: PasswordLoginIn, request: Request, response: Response, db: DbDep, ctx: CtxDep
) -> PasswordLoginAnswer:
    """Log in with a login name and password: sets the httpOnly session cookie and
    returns the token (for `Authorization: Bearer`)."""
    now = ctx.now_ms()
    address = request.client.host if request.client else "unknown"
    with db.begin():  # a failure is counted although the answer is an error
        result = password_login(
            db, body.login, body.password, address=address, now_ms=now,
            limits=login_limits(ctx.settings, address),
        )  # fmt: skip
        principal = (
            principal_for_user(db, result.token, now_ms=now)
            if isinstance(result, LoggedIn)
            else None
        )
    if not isinstance(result, LoggedIn) or principal is None:
        if not isinstance(result, LoggedIn) and result.why == "too_many_attempts":
            retry_s = max(1, -(-result.retry_after_ms // 1000))
            raise TooManyAttempts(f"too many failed logins; try again in {retry_s} s")
        raise Unauthorized("unknown login or wrong password", code="bad_credentials")
    set_login_cookie(response, result.token, ctx.settings)
    return PasswordLoginAnswer(
        **who(principal).model_dump(), token=result.token, expires_ms=result.expires_ms
    )


@router.get("/auth/me")
def whoami(principal: PrincipalDep) -> WhoAmI:
    """Who is logged in, with their grants."""
    return who(principal)
