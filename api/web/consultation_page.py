"""A consultation on a resident's phone (docs/money-page.md).

| page | what |
|---|---|
| `GET /c/{id}` | the proposal, the live count (`?part=live`), the answer form |
| `POST /c/{id}/sms`, `POST /c/{id}/login` | the SMS code login of `/me`, back to this page |
| `POST /c/{id}/answer` | yes or no for the resident's household |

The JSON API decides everything (api/routes/consultations.py); forms carry
the CSRF token (api/boundary.py) and the SMS code is rate limited there.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from api.web import i18n
from api.web.client import ApiClient, Problem, api_client
from api.web.i18n import Lang
from api.web.routes import (
    PHONE,
    _clean_phone,
    _form,
    _lang,
    _problem_text,
    error_page,
    lang_query,
    render,
)

router = APIRouter(include_in_schema=False)
ApiDep = Annotated[ApiClient, Depends(api_client)]
LangQuery = Annotated[str | None, Query(alias="lang", max_length=8)]
PartQuery = Annotated[str | None, Query(alias="part", max_length=8)]
CHINA = timezone(timedelta(hours=8))


def local_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, CHINA).strftime("%Y-%m-%d %H:%M")


async def _page(
    request: Request, api: ApiClient, cid: int, lg: Lang, *, part: str | None = None,
    phone: str = "", code_sent: bool = False, error: str = "", status: int = 200,
) -> Response:  # fmt: skip
    answer = await api.get(f"/api/v1/consultations/{cid}")
    if not answer.ok:
        return error_page(request, lg, answer.problem, title_key="consult_title")
    c = answer.json_dict()
    if part == "live":
        return render(request, "_consultation_live.html", lg, c=c)
    mine = await api.get(f"/api/v1/consultations/{cid}/mine")
    me: dict[str, Any] | None = mine.json_dict() if mine.ok else None
    return render(
        request, "consultation.html", lg, status=status, c=c, me=me, phone=phone,
        code_sent=code_sent, error=error, closes=local_time(int(c["closes_ms"])),
        path=f"/c/{cid}", switch_path=f"/c/{cid}",
    )  # fmt: skip


@router.get("/c/{cid}")
async def consultation(
    request: Request, cid: int, api: ApiDep, lang: LangQuery = None, part: PartQuery = None
) -> Response:
    return await _page(request, api, cid, _lang(request, lang), part=part)


@router.post("/c/{cid}/sms")
async def consultation_sms(request: Request, cid: int, api: ApiDep) -> Response:
    form = await _form(request)
    lg = _lang(request, form.get("lang"))
    phone = _clean_phone(form.get("phone", ""))
    if not PHONE.match(phone):
        return await _page(request, api, cid, lg, phone=phone, error=i18n.t(lg, "bad_phone"),
                           status=422)  # fmt: skip
    sent = await api.post("/api/v1/auth/sms", {"phone": phone})
    if not sent.ok:
        again = sent.problem.code == "sms_too_soon"
        return await _page(request, api, cid, lg, phone=phone, code_sent=again,
                           error=_problem_text(sent.problem, lg),
                           status=200 if again else sent.status)  # fmt: skip
    return await _page(request, api, cid, lg, phone=phone, code_sent=True)


@router.post("/c/{cid}/login")
async def consultation_login(request: Request, cid: int, api: ApiDep) -> Response:
    form = await _form(request)
    lg = _lang(request, form.get("lang"))
    phone = _clean_phone(form.get("phone", ""))
    code = form.get("code", "").replace(" ", "")
    login = await api.post("/api/v1/auth/login", {"phone": phone, "code": code})
    if not login.ok:
        return await _page(request, api, cid, lg, phone=phone, code_sent=True,
                           error=_problem_text(login.problem, lg),
                           status=login.status if login.status < 500 else 503)  # fmt: skip
    response = RedirectResponse(f"/c/{cid}{lang_query(lg)}", status_code=303)
    for cookie in login.set_cookies:
        response.headers.append("set-cookie", cookie)
    return response


@router.post("/c/{cid}/answer")
async def consultation_answer(request: Request, cid: int, api: ApiDep) -> Response:
    form = await _form(request)
    lg = _lang(request, form.get("lang"))
    given = await api.put(f"/api/v1/consultations/{cid}/answer", {"answer": form.get("answer")})
    if not given.ok:
        if given.status == 404:
            return error_page(request, lg, Problem(404, "not_found", ""), title_key="consult_title")
        return await _page(request, api, cid, lg, error=_problem_text(given.problem, lg),
                           status=given.status if given.status < 500 else 503)  # fmt: skip
    return RedirectResponse(f"/c/{cid}{lang_query(lg)}", status_code=303)
