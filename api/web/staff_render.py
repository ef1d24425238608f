"""Rendering and helpers shared by the login page and the staff board pages.

The staff pages are server-rendered like the resident pages (same Jinja
environment, same security headers) but call the services directly with the
caller's `Principal`: the access rules live in the services, so the JSON API
and the pages apply the same ones, and the board stream re-reads a shed on
every change without an in-process HTTP call.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo
from typing import Any, Final
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select

from api.access import Principal, current_principal
from api.boundary import add_form_tokens
from api.context import AppContext
from api.models import Shed
from api.web import staff_i18n
from api.web.i18n import Lang
from api.web.money import money
from api.web.routes import SECURITY_HEADERS, _env, lang_query

_LOCAL_PATH: Final = re.compile(r"^/(?!/)[A-Za-z0-9/_.?=&%-]*$")


def ctx_of(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def safe_next(value: str | None, default: str) -> str:
    """A path on this site only (`/board?...`), never another site (`//x`, `https:`)."""
    return value if value and _LOCAL_PATH.match(value) and "\\" not in value else default


def to_login(request: Request, lang: Lang) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = f"/login?next={quote(here, safe='')}" + ("&lang=en" if lang == "en" else "")
    return RedirectResponse(url, status_code=303)


def staff_principal(request: Request) -> Principal | None:
    return current_principal(request)


def clock_text(ms: int | None, lang: Lang, now_ms: int, zone: tzinfo) -> str:
    """A time of day in the compound's time zone, with the date when not today there."""
    if ms is None:
        return "—"
    when = datetime.fromtimestamp(ms / 1000, zone)
    if when.date() == datetime.fromtimestamp(now_ms / 1000, zone).date():
        return when.strftime("%H:%M:%S")
    return when.strftime("%m-%d %H:%M")


class ShedNames:
    """`shed_name(id)` on the staff pages: a shed's name (its id when it has none)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._names: dict[str, str] | None = None

    def __call__(self, shed_id: str | None) -> str:
        if not shed_id:
            return ""
        if self._names is None:
            with self.ctx.sessions() as db:
                self._names = dict(db.execute(select(Shed.id, Shed.name)).all())
        return self._names.get(shed_id) or shed_id


class LocalTimes:
    """`at(ms, compound=..., shed=...)` on the staff pages: each time in the time zone
    of its compound (ApiSettings.timezone / compound_timezones). Which compound a
    shed is in is only looked up when some compound has a zone of its own."""

    def __init__(self, ctx: AppContext, lang: Lang, now_ms: int) -> None:
        self.ctx, self.lang, self.now_ms = ctx, lang, now_ms
        self._compounds: dict[str, str] | None = None

    def _compound_of(self, shed_id: str) -> str | None:
        if self._compounds is None:
            with self.ctx.sessions() as db:
                self._compounds = dict(db.execute(select(Shed.id, Shed.compound_id)).all())
        return self._compounds.get(shed_id)

    def zone(self, compound: str | None = None, shed: str | None = None) -> tzinfo:
        settings = self.ctx.settings
        if compound is None and shed is not None and settings.compound_timezones:
            compound = self._compound_of(shed)
        return settings.zone_of(compound)

    def __call__(self, ms: int | None, compound: str | None = None, shed: str | None = None) -> str:
        return clock_text(ms, self.lang, self.now_ms, self.zone(compound, shed))


def duration_text(ms: int | None, lang: Lang) -> str:
    if ms is None or ms < 0:
        return "—"
    minutes = ms // 60_000
    h, m = divmod(minutes, 60)
    if lang == "en":
        return f"{h} h {m:02d} min" if h else f"{m} min"
    return f"{h}小时{m:02d}分" if h else f"{m}分钟"


def render_staff(
    request: Request,
    template: str,
    lang: Lang,
    *,
    principal: Principal | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    return HTMLResponse(
        render_fragment(request, template, lang, principal=principal, **context),
        status_code=status,
        headers={"Cache-Control": "no-store", **SECURITY_HEADERS},
    )


def render_fragment(
    request: Request, template: str, lang: Lang, *, principal: Principal | None, **context: Any
) -> str:
    now = ctx_of(request).now_ms()

    def tr(key: str, **values: object) -> str:
        return staff_i18n.t(lang, key, **values)

    def lab(table: str, code: str | None) -> str:
        return staff_i18n.label(getattr(staff_i18n, table), code, lang)

    other: Lang = "zh" if lang == "en" else "en"
    query = [(k, v) for k, v in request.query_params.items() if k != "lang"]
    if other == "en":
        query.append(("lang", "en"))
    switch = request.url.path + ("?" + "&".join(f"{k}={quote(v)}" for k, v in query) if query
                                 else "")  # fmt: skip
    html = (
        _env()
        .get_template(template)
        .render(
            lang=lang,
            html_lang="en" if lang == "en" else "zh-CN",
            t=tr,
            label=lab,
            money=lambda fen: money(fen, lang),
            at=LocalTimes(ctx_of(request), lang, now),
            alarm_text=lambda detail: staff_i18n.alarm_detail(detail, lang),
            target_text=lambda target: staff_i18n.audit_target(target, lang),
            shed_name=ShedNames(ctx_of(request)),
            took=lambda ms: duration_text(ms, lang),
            now_ms=now,
            q=lang_query(lang),
            amp="&lang=en" if lang == "en" else "",
            switch_url=switch,
            principal=principal,
            **context,
        )
    )
    return add_form_tokens(html, request.cookies)  # CSRF (api/boundary.py)
