"""The resident pages: socket, shed, order and "my charges".

Server-rendered HTML (Jinja2) that works with scripts off; `web.js` adds the
live refresh (it swaps in the page's `?part=live` fragment every few seconds)
and a confirmation before stopping. Chinese by default, English with
`?lang=en`. Data comes from the public JSON API through `ApiClient`.

| page | what |
|---|---|
| `GET /s/{shed_id}` | free sockets and bays right now, the posted price |
| `GET /s/{shed_id}/{port}` | the socket: state, price, choices, pay button |
| `POST /s/{shed_id}/{port}` | create the order, 303 to the provider's pay page |
| `GET /o/{out_trade_no}` | status, live progress, stop button, receipt |
| `POST /o/{out_trade_no}/stop` | stop early |
| `GET /me`, `POST /me/sms`, `/me/login`, `/me/logout` | log in by phone and code; own charges |
| `GET /web/static/{name}` | the stylesheet and the script |
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from api.boundary import add_form_tokens
from api.web import i18n, reports_demand, views
from api.web.client import Answer, ApiClient, Problem, api_client
from api.web.i18n import LANG_COOKIE, Lang, choose_lang
from api.web.money import money

HERE: Final = Path(__file__).parent
STATIC_DIR: Final = HERE / "static"
STATIC_TYPES: Final = {
    "web.css": "text/css; charset=utf-8",
    "web.js": "text/javascript; charset=utf-8",
    "staff.css": "text/css; charset=utf-8",  # the staff board (api/web/staff*.py)
    "staff.js": "text/javascript; charset=utf-8",
    "icon.svg": "image/svg+xml",
    "reports.css": "text/css; charset=utf-8",  # the office reports (api/web/reports.py)
}
SHED_ID: Final = re.compile(r"^[a-z0-9-]{1,32}$")
ORDER_NO: Final = re.compile(r"^[A-Za-z0-9_-]{6,32}$")
PHONE: Final = re.compile(r"^1[3-9]\d{9}$")  # a mainland mobile number
MAX_FORM_BYTES: Final = 4096
SECURITY_HEADERS: Final = {
    # No inline script or style anywhere, nothing from another origin. No form-action:
    # the pay form ends in a redirect to the payment provider's page.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

router = APIRouter(include_in_schema=False)
ApiDep = Annotated[ApiClient, Depends(api_client)]
LangQuery = Annotated[str | None, Query(alias="lang", max_length=8)]
PartQuery = Annotated[str | None, Query(alias="part", max_length=8)]


# --------------------------------------------------------------------------- rendering


@cache
def _env() -> Environment:
    """Built on first use, not at import."""
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = static_url
    return env


@cache
def _static_file(name: str) -> tuple[bytes, str]:
    data = (STATIC_DIR / name).read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:12]


def static_url(name: str) -> str:
    """`/web/static/web.css?v=<hash>`: cached for long, new URL when the file changes."""
    return f"/web/static/{name}?v={_static_file(name)[1]}"


def lang_query(lang: Lang) -> str:
    return "?lang=en" if lang == "en" else ""


def _lang(request: Request, explicit: str | None) -> Lang:
    """The resident's language (i18n.choose_lang): asked for, kept, or the browser's."""
    return choose_lang(
        explicit, request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")
    )


def render(
    request: Request,
    template: str,
    lang: Lang,
    *,
    status: int = 200,
    switch_path: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """A page (or a `?part=live` fragment) in `lang`.

    `switch_path` is where the language switch leads when the page answers a POST.
    """

    def tr(key: str, **values: object) -> str:
        return i18n.t(lang, key, **values)

    def money_text(fen: object) -> str:
        return money(fen, lang)

    def live(path: str) -> str:
        return f"{path}?part=live" + ("&lang=en" if lang == "en" else "")

    other: Lang = "zh" if lang == "en" else "en"
    html = (
        _env()
        .get_template(template)
        .render(
            lang=lang,
            html_lang="en" if lang == "en" else "zh-CN",
            t=tr,
            money=money_text,
            live=live,
            q=lang_query(lang),
            switch_url=(switch_path or request.url.path) + f"?lang={other}",
            **context,
        )
    )
    html = add_form_tokens(html, request.cookies)  # CSRF (api/boundary.py)
    headers = {"Cache-Control": "no-store", **SECURITY_HEADERS}
    response = HTMLResponse(html, status_code=status, headers=headers)
    if request.cookies.get(LANG_COOKIE) != lang:  # the choice holds for the next pages
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax",
                            httponly=True)  # fmt: skip
    return response


def error_page(request: Request, lang: Lang, problem: Problem, *, title_key: str) -> HTMLResponse:
    status = problem.status if problem.status in (404, 410, 429) else 503
    message = "" if problem.status == 404 else _problem_text(problem, lang)
    return render(
        request, "error.html", lang, status=status, title=i18n.t(lang, title_key), message=message
    )


def _problem_text(problem: Problem, lang: Lang) -> str:
    for table in (i18n.NOT_PAYABLE, i18n.PROBLEMS):
        if problem.code.lower() in table:
            return i18n.label(table, problem.code, lang)
    if problem.status >= 500:
        return i18n.t(lang, "unavailable")
    return f"{i18n.t(lang, 'try_again')} ({problem.code})"


def _not_found(request: Request, lang: Lang, key: str) -> HTMLResponse:
    return error_page(request, lang, Problem(404, "not_found", ""), title_key=key)


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form (no multipart parser needed for four fields)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[-1].strip() for key, values in parsed.items()}


def _clean_phone(raw: str) -> str:
    return re.sub(r"[\s-]", "", raw).removeprefix("+86")


# --------------------------------------------------------------------------- static


@router.get("/web/static/{name}")
def static_file(name: str) -> Response:
    if name not in STATIC_TYPES:
        return Response(status_code=404)
    data, _digest = _static_file(name)
    return Response(
        data,
        media_type=STATIC_TYPES[name],
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


# --------------------------------------------------------------------------- shed


@router.get("/s/{shed_id}")
async def shed_page(
    request: Request, shed_id: str, api: ApiDep, lang: LangQuery = None, part: PartQuery = None
) -> HTMLResponse:
    lg = _lang(request, lang)
    if not SHED_ID.match(shed_id):
        return _not_found(request, lg, "no_such_shed")
    answer = await api.get(f"/api/v1/public/sheds/{shed_id}")
    if not answer.ok:
        return error_page(request, lg, answer.problem, title_key="no_such_shed")
    shed = views.shed_view(answer.json_dict(), lg)
    template = "_shed_live.html" if part == "live" else "shed.html"
    return render(request, template, lg, shed=shed, shed_id=shed_id)


# --------------------------------------------------------------------------- socket


async def _socket(api: ApiClient, shed_id: str, port: str, lang: Lang) -> views.SocketView | Answer:
    answer = await api.get(f"/api/v1/public/sheds/{shed_id}/sockets/{int(port)}")
    if not answer.ok:
        return answer
    return views.socket_view(answer.json_dict(), lang, shed_id=shed_id, port=int(port))


def _valid_socket_path(shed_id: str, port: str) -> bool:
    return bool(SHED_ID.match(shed_id)) and port.isdigit() and 0 < int(port) < 10_000


@router.get("/s/{shed_id}/{port}")
async def socket_page(
    request: Request,
    shed_id: str,
    port: str,
    api: ApiDep,
    lang: LangQuery = None,
    part: PartQuery = None,
) -> HTMLResponse:
    lg = _lang(request, lang)
    if not _valid_socket_path(shed_id, port):
        return _not_found(request, lg, "no_such_socket")
    socket = await _socket(api, shed_id, port, lg)
    if isinstance(socket, Answer):
        return error_page(request, lg, socket.problem, title_key="no_such_socket")
    if part == "live":
        return render(request, "_socket_live.html", lg, socket=socket)
    phone = await _my_phone(request, api)
    page = render(
        request, "socket.html", lg, socket=socket, error="", phone=phone, chosen=_default(socket)
    )
    if reports_demand.from_sticker(request):  # unserved demand (docs/reports.md)
        await reports_demand.note_scan(request, page, shed_id, int(port))
    return page


async def _my_phone(request: Request, api: ApiClient) -> str:
    """The logged-in resident's number, to fill in the form; "" when not logged in."""
    if "cookie" not in request.headers:
        return ""
    answer = await api.get("/api/v1/me/sessions")
    phone = answer.json_dict().get("phone") if answer.ok else None
    return phone if isinstance(phone, str) and PHONE.match(phone) else ""


def _default(socket: views.SocketView) -> str:
    return socket.choices[0].value if socket.choices else ""


@router.post("/s/{shed_id}/{port}")
async def socket_pay(
    request: Request, shed_id: str, port: str, api: ApiDep, lang: LangQuery = None
) -> Response:
    """The pay button: create the order, then send the browser to the provider's page."""
    lg = _lang(request, lang)
    if not _valid_socket_path(shed_id, port):
        return _not_found(request, lg, "no_such_socket")
    form = await _form(request)
    lg = _lang(request, form.get("lang") or lang)
    socket = await _socket(api, shed_id, port, lg)
    if isinstance(socket, Answer):
        return error_page(request, lg, socket.problem, title_key="no_such_socket")
    choice, phone = form.get("choice", ""), _clean_phone(form.get("phone", ""))

    def again(shown: views.SocketView, error: str, status: int) -> HTMLResponse:
        chosen = choice or _default(shown)
        return render(
            request,
            "socket.html",
            lg,
            status=status,
            socket=shown,
            error=error,
            phone=phone,
            chosen=chosen,
        )

    if not socket.payable:
        return again(socket, "", 409)
    if not PHONE.match(phone):
        return again(socket, i18n.t(lg, "bad_phone"), 422)
    body: dict[str, Any] = {"shed_id": shed_id, "port": int(port)}
    offered = {c.value for c in socket.choices}
    if choice == "until_full" and choice in offered and socket.deposit_fen:
        body |= {"mode": "until_full", "amount_fen": socket.deposit_fen}
    elif choice.isdigit() and choice in offered:
        body |= {"mode": "amount", "amount_fen": int(choice)}
    else:
        return again(socket, i18n.t(lg, "bad_choice"), 422)
    body["phone"] = phone
    answer = await api.post("/api/v1/orders", body)
    pay_url = answer.json_dict().get("pay_url") or answer.json_dict().get("code_url")
    if not answer.ok or not isinstance(pay_url, str) or not pay_url:
        problem = answer.problem
        if problem.code.lower() in i18n.NOT_PAYABLE:
            refreshed = await _socket(api, shed_id, port, lg)
            if isinstance(refreshed, views.SocketView):
                socket = refreshed
        status = problem.status if problem.status in (409, 429) else 422
        return again(socket, _problem_text(problem, lg), status)
    return RedirectResponse(pay_url, status_code=303, headers={"Cache-Control": "no-store"})


# --------------------------------------------------------------------------- order


async def _order_page(
    request: Request, api: ApiClient, out_trade_no: str, lang: Lang, part: str | None
) -> HTMLResponse:
    if not ORDER_NO.match(out_trade_no):
        return _not_found(request, lang, "no_such_order")
    answer = await api.get(f"/api/v1/orders/{out_trade_no}")
    if not answer.ok:
        return error_page(request, lang, answer.problem, title_key="no_such_order")
    order = views.order_view(answer.json_dict(), lang)
    if part == "live":
        return render(request, "_order_live.html", lang, order=order, stop_error="")
    shed_name = await _shed_name(api, order.shed, lang)
    return render(request, "order.html", lang, order=order, shed_name=shed_name, stop_error="")


async def _shed_name(api: ApiClient, shed_id: str, lang: Lang) -> str:
    """The shed's name for a heading; its id when the name cannot be had."""
    if not SHED_ID.match(shed_id):
        return shed_id
    answer = await api.get(f"/api/v1/public/sheds/{shed_id}")
    return views.shed_view(answer.json_dict(), lang).name if answer.ok else shed_id


@router.get("/o/{out_trade_no}")
async def order_page(
    request: Request, out_trade_no: str, api: ApiDep, lang: LangQuery = None, part: PartQuery = None
) -> HTMLResponse:
    return await _order_page(request, api, out_trade_no, _lang(request, lang), part)


@router.post("/o/{out_trade_no}/stop")
async def order_stop(
    request: Request, out_trade_no: str, api: ApiDep, lang: LangQuery = None, part: PartQuery = None
) -> Response:
    """Stop early. With `?part=live` (the script) answer the fresh fragment, else 303 back."""
    lg = _lang(request, lang)
    if not ORDER_NO.match(out_trade_no):
        return _not_found(request, lg, "no_such_order")
    answer = await api.post(f"/api/v1/orders/{out_trade_no}/stop")
    stop_error = "" if answer.ok else i18n.t(lg, "stop_failed")
    if part == "live" or stop_error:
        fresh = await api.get(f"/api/v1/orders/{out_trade_no}")
        if not fresh.ok:
            return error_page(request, lg, fresh.problem, title_key="no_such_order")
        order = views.order_view(fresh.json_dict(), lg)
        template = "_order_live.html" if part == "live" else "order.html"
        return render(
            request,
            template,
            lg,
            switch_path=f"/o/{out_trade_no}",
            order=order,
            shed_name=order.shed,
            stop_error=stop_error,
        )
    return RedirectResponse(f"/o/{out_trade_no}{lang_query(lg)}", status_code=303)


# --------------------------------------------------------------------------- me


def _me(
    request: Request,
    lang: Lang,
    *,
    orders: list[views.OrderView] | None,
    me: str = "",
    shed_names: dict[str, str] | None = None,
    phone: str = "",
    code_sent: bool = False,
    error: str = "",
    status: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "me.html",
        lang,
        status=status,
        switch_path="/me",
        orders=orders,
        me=me,
        shed_names=shed_names or {},
        phone=phone,
        code_sent=code_sent,
        error=error,
    )


@router.get("/me")
async def me_page(request: Request, api: ApiDep, lang: LangQuery = None) -> HTMLResponse:
    lg = _lang(request, lang)
    answer = await api.get("/api/v1/me/sessions")
    if answer.status in (401, 403):
        return _me(request, lg, orders=None)
    if not answer.ok:
        return error_page(request, lg, answer.problem, title_key="me_title")
    orders = [views.order_view(item, lg) for item in views.sessions_of(answer.body)]
    names = {shed: await _shed_name(api, shed, lg) for shed in {o.shed for o in orders}}
    phone = answer.json_dict().get("phone")
    me = views.masked_phone(phone) if isinstance(phone, str) else ""
    return _me(request, lg, orders=orders, me=me, shed_names=names)


@router.post("/me/sms")
async def me_sms(request: Request, api: ApiDep, lang: LangQuery = None) -> HTMLResponse:
    form = await _form(request)
    lg = _lang(request, form.get("lang") or lang)
    phone = _clean_phone(form.get("phone", ""))
    if not PHONE.match(phone):
        return _me(request, lg, orders=None, phone=phone, error=i18n.t(lg, "bad_phone"), status=422)
    answer = await api.post("/api/v1/auth/sms", {"phone": phone})
    if not answer.ok:
        error = _problem_text(answer.problem, lg)
        # Asked again within the minute: the code already sent still works, so its field stays.
        again = answer.problem is not None and answer.problem.code == "sms_too_soon"
        return _me(request, lg, orders=None, phone=phone, error=error, code_sent=again,
                   status=200 if again else answer.status)  # fmt: skip
    return _me(request, lg, orders=None, phone=phone, code_sent=True)


@router.post("/me/login")
async def me_login(request: Request, api: ApiDep, lang: LangQuery = None) -> Response:
    """Log in through the API; its session cookie is passed on to the browser."""
    form = await _form(request)
    lg = _lang(request, form.get("lang") or lang)
    phone = _clean_phone(form.get("phone", ""))
    code = form.get("code", "").replace(" ", "")
    answer = await api.post("/api/v1/auth/login", {"phone": phone, "code": code})
    if not answer.ok:
        error = _problem_text(answer.problem, lg)
        status = answer.status if answer.status < 500 else 503
        return _me(
            request, lg, orders=None, phone=phone, code_sent=True, error=error, status=status
        )
    return _back_to_me(lg, answer)


@router.post("/me/logout")
async def me_logout(request: Request, api: ApiDep, lang: LangQuery = None) -> Response:
    """Log out through the API (a shared phone); its cookie deletion goes to the browser."""
    answer = await api.post("/api/v1/auth/logout")
    return _back_to_me(_lang(request, lang), answer)


def _back_to_me(lang: Lang, answer: Answer) -> Response:
    response = RedirectResponse(f"/me{lang_query(lang)}", status_code=303)
    for cookie in answer.set_cookies:
        response.headers.append("set-cookie", cookie)
    return response
