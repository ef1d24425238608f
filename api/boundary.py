"""What every request passes before a route sees it (docs/security.md):

- a body size limit: `max_body_bytes` (64 KiB), `max_uplink_body_bytes` for
  the sheds' own routes (`/api/v1/sheds/...`), answered `413 too_large`;
- control characters: NUL and the other C0/C1 control characters (all but
  tab, newline and carriage return) anywhere in the path, the query, a JSON
  body (raw or as a `\\u` escape) or a form are refused `422
  control_character` before any route (or database) sees them; in a shed's
  uplink batch each record holding one is rejected `bad_record` by itself;
- cross-site request forgery: a state-changing request (POST, PUT, PATCH,
  DELETE) that a browser could make with a session cookie is refused
  `403 csrf_failed` when it comes from another site (`Sec-Fetch-Site` other
  than same-origin/none, or an `Origin` that is not this site). On the
  pages (everything outside `/api/` and the provider's `/pay/notify/`) a
  request carrying the session cookie must also bring the per-session token
  the pages put in every form (`csrf`), derived from the session cookie.
  Requests with `Authorization: Bearer` (the JSON API's clients, sheds)
  are not cookie-authenticated and are not checked.

Security headers for every response: `security_headers` (HSTS only when
served over TLS or `hsts` is set).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qs, parse_qsl, urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.services.sms_login import COOKIE_NAME
from api.settings import ApiSettings

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# A JSON escape of one (an odd run of backslashes before the `u`).
_CONTROL_ESCAPE: Final = re.compile(
    r"(?<!\\)(?:\\\\)*\\u(00[01][0-9a-f]|007f|00[89][0-9a-f])", re.IGNORECASE
)
_ALLOWED_ESCAPES: Final = frozenset({"0009", "000a", "000d"})
_UPLINK: Final = re.compile(r"^/api/v1/sheds/[^/]+/uplink$")
TOKEN_FIELD: Final = "csrf"
_FORM: Final = re.compile(r'(<form\b[^>]*\bmethod="post"[^>]*>)', re.IGNORECASE)
# Pages use no inline script or style and nothing from another origin.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'"
)


def holds_control(value: Any) -> bool:
    """A control character anywhere in a decoded JSON value (keys too)."""
    if isinstance(value, str):
        return _CONTROL.search(value) is not None
    if isinstance(value, dict):
        return any(holds_control(k) or holds_control(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_control(v) for v in value)
    return False


def control_characters(path: str, query: str, content_type: str, body: bytes) -> str | None:
    """Where a request carries a control character, or None."""
    if _CONTROL.search(path):
        return "the path"
    if any(_CONTROL.search(k + v) for k, v in parse_qsl(query, keep_blank_values=True)):
        return "the query"
    if not body:
        return None
    text = body.decode("utf-8", "replace")
    if content_type.startswith("application/x-www-form-urlencoded"):
        pairs = parse_qsl(text, keep_blank_values=True)
        return "the form" if any(_CONTROL.search(k + v) for k, v in pairs) else None
    if _CONTROL.search(text):
        return "the body"
    for match in _CONTROL_ESCAPE.finditer(text):
        if match.group(1).lower() not in _ALLOWED_ESCAPES:
            return "the body"
    return None


def csrf_token(session_cookie: str | None) -> str:
    """The form token of one login session: a hash of its secret cookie, which
    another site can neither read nor compute. Empty without a session."""
    if not session_cookie:
        return ""
    return hashlib.sha256(b"ebshed-csrf\0" + session_cookie.encode()).hexdigest()[:40]


def add_form_tokens(html: str, cookies: Mapping[str, str]) -> str:
    """Put the session's token into every POST form of a rendered page."""
    token = csrf_token(cookies.get(COOKIE_NAME))
    if not token:
        return html
    field = f'<input type="hidden" name="{TOKEN_FIELD}" value="{token}">'
    return _FORM.sub(lambda m: m.group(1) + field, html)


def cross_site(headers: Headers, public_base_url: str) -> str | None:
    """Why a request looks cross-site, or None."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site: {site}"
    origin = headers.get("origin")
    if origin is None:
        return None
    netloc = urlsplit(origin).netloc if origin != "null" else ""
    if netloc and netloc in (headers.get("host"), urlsplit(public_base_url).netloc):
        return None
    return f"Origin: {origin}"


def security_headers(settings: ApiSettings, *, tls: bool) -> dict[str, str]:
    headers = {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    }
    if tls or settings.hsts:
        headers["Strict-Transport-Security"] = f"max-age={settings.hsts_max_age_s}"
    return headers


class Boundary:
    """The ASGI middleware of this module (installed by `create_app`)."""

    def __init__(self, app: ASGIApp, settings: ApiSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope["path"]
        limit = (
            self.settings.max_uplink_body_bytes
            if path.startswith("/api/v1/sheds/")
            else self.settings.max_body_bytes
        )
        tls = scope.get("scheme") == "https" or headers.get("x-forwarded-proto") == "https"
        extra = security_headers(self.settings, tls=tls)
        if path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            extra.pop("Content-Security-Policy")  # FastAPI's documentation pages load scripts

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    if name not in response_headers:
                        response_headers[name] = value
            await send(message)

        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(limit)(scope, receive, send_with_headers)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        if scope["method"] in SAFE_METHODS:
            where = control_characters(path, query, "", b"")
            if where is not None:
                await _control(where)(scope, receive, send_with_headers)
                return
            await self.app(scope, receive, send_with_headers)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _too_large(limit)(scope, receive, send_with_headers)
                return
            more = message.get("more_body", False)
        if not path.startswith("/pay/notify/"):  # the provider's own answer codes apply there
            kind = headers.get("content-type", "")
            # An uplink batch is judged record by record (api/services/uplink.py): one
            # bad record is rejected with its code, the others are applied.
            checked = b"" if _UPLINK.match(path) else bytes(body)
            where = control_characters(path, query, kind, checked)
            if where is not None:
                await _control(where)(scope, receive, send_with_headers)
                return
        refused = self._csrf(path, headers, bytes(body))
        if refused is not None:
            answer = JSONResponse(
                {"code": "csrf_failed", "message": f"cross-site request refused ({refused})"},
                status_code=403,
            )
            await answer(scope, receive, send_with_headers)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send_with_headers)

    def _csrf(self, path: str, headers: Headers, body: bytes) -> str | None:
        if path.startswith("/pay/notify/"):
            return None  # the provider's server calls it; its signature is the check
        if headers.get("authorization"):
            return None  # a bearer token: not something a browser adds by itself
        cookies = cookie_parser(headers.get("cookie", ""))
        session = cookies.get(COOKIE_NAME)
        page = not path.startswith("/api/")
        if session is None and not page:
            return None  # not cookie-authenticated
        why = cross_site(headers, self.settings.public_base_url)
        if why is not None or not page or session is None:
            return why
        form = parse_qs(body.decode("utf-8", "replace")) if body else {}
        sent = (form.get(TOKEN_FIELD) or [""])[-1]
        if not hmac.compare_digest(sent.encode(), csrf_token(session).encode()):
            return "missing or wrong form token"
        return None


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        {"code": "too_large", "message": f"request body larger than {limit} bytes"},
        status_code=413,
    )


def _control(where: str) -> JSONResponse:
    return JSONResponse(
        {
            "code": "control_character",
            "message": f"{where} holds a control character (NUL or another one "
            "than tab, newline, carriage return); they are not accepted",
        },
        status_code=422,
    )
