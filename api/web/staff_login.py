"""`/login` and `/logout` for staff, office and admin users (password).

After a login the browser goes to `?next=` (a path on this site), else to the
user's home: the board for staff and admins, the reports for office users.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from api.access import principal_for_user
from api.routes.staff_auth import login_limits, set_login_cookie
from api.services.accounts import LoggedIn, Refused, password_login
from api.services.sms_login import COOKIE_NAME, close_session
from api.services.throttle import RateLimited
from api.web.i18n import pick_lang
from api.web.routes import LangQuery, _form
from api.web.staff_render import ctx_of, render_staff, safe_next, staff_principal

router = APIRouter(include_in_schema=False)


@router.get("/login")
def login_page(request: Request, lang: LangQuery = None, next: str | None = None) -> Response:
    lg = pick_lang(lang)
    principal = staff_principal(request)
    if principal is not None and principal.user_id is not None and principal.grants:
        return RedirectResponse(safe_next(next, principal.home()), status_code=303)
    return render_staff(request, "staff/login.html", lg, principal=None, error="", login="",
                        next=safe_next(next, ""))  # fmt: skip


@router.post("/login")
async def login_submit(request: Request, lang: LangQuery = None) -> Response:
    form = await _form(request)
    lg = pick_lang(form.get("lang") or lang)
    ctx = ctx_of(request)
    login, password = form.get("login", ""), form.get("password", "")
    nxt = safe_next(form.get("next"), "")
    now = ctx.now_ms()
    address = request.client.host if request.client else "unknown"
    try:
        with ctx.sessions() as db, db.begin():
            result = password_login(db, login, password, address=address, now_ms=now,
                                    limits=login_limits(ctx.settings, address))  # fmt: skip
            principal = (
                principal_for_user(db, result.token, now_ms=now)
                if isinstance(result, LoggedIn)
                else None
            )
    except RateLimited:
        result, principal = Refused("too_many_attempts"), None
    if not isinstance(result, LoggedIn) or principal is None:
        why = result.why if not isinstance(result, LoggedIn) else "bad_credentials"
        status = 429 if why == "too_many_attempts" else 401
        return render_staff(request, "staff/login.html", lg, principal=None, status=status,
                            error=why, login=login, next=nxt)  # fmt: skip
    home = principal.home() + ("?lang=en" if lg == "en" else "")
    response = RedirectResponse(nxt or home, status_code=303)
    set_login_cookie(response, result.token, ctx.settings)
    return response


@router.api_route("/logout", methods=["GET", "POST"])
def logout(request: Request, lang: LangQuery = None) -> Response:
    """End this login (the cookie) and go back to the login page."""
    token = request.cookies.get(COOKIE_NAME)
    if token:
        ctx = ctx_of(request)
        with ctx.sessions() as db, db.begin():
            close_session(db, token)
    response = RedirectResponse("/login" + ("?lang=en" if pick_lang(lang) == "en" else ""),
                                status_code=303)  # fmt: skip
    response.delete_cookie(COOKIE_NAME, path="/")
    return response
