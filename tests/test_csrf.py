"""Cross-site request forgery (api/boundary.py): a state-changing request a
browser makes with the session cookie must come from this site and, on the
pages, carry the session's form token; bearer-token clients are unaffected."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from api.boundary import csrf_token
from api.models import AuditEntry, Command

if TYPE_CHECKING:
    from tests.api_db import Api

pytest_plugins = ["tests.api_db"]

PASSWORD = "correct horse battery"
EVIL = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
TOKEN = re.compile(r'<input type="hidden" name="csrf" value="([0-9a-f]+)">')


def counts(api: Api) -> tuple[int, int]:
    with api.app.state.ctx.sessions() as db:
        commands = db.scalar(select(func.count()).select_from(Command)) or 0
        audit = db.scalar(select(func.count()).select_from(AuditEntry)) or 0
        return int(commands), int(audit)


async def staff_cookie(api: Api) -> str:
    """Log in on the login page as a browser does; the session cookie."""
    await api.user("staff", "demo", login="zhang")
    login = await api.client.post("/login", data={"login": "zhang", "password": PASSWORD})
    assert login.status_code == 303, login.text
    cookie = api.client.cookies.get("ebshed_session")
    assert cookie
    return cookie


async def test_a_cross_site_form_post_is_refused_and_changes_nothing(api: Api) -> None:
    shed_id, _ = await api.register_shed()
    await staff_cookie(api)
    page = await api.client.get(f"/board/s/{shed_id}/1")
    assert page.status_code == 200
    tokens = set(TOKEN.findall(page.text))
    assert len(tokens) == 1 and len(TOKEN.findall(page.text)) >= 3  # in every form
    token = tokens.pop()
    url = f"/board/s/{shed_id}/1/disable"
    form = {"reason": "forged", "csrf": token}

    forged = await api.client.post(url, data=form, headers=EVIL)
    assert (forged.status_code, forged.json()["code"]) == (403, "csrf_failed")
    origin_only = await api.client.post(url, data=form, headers={"Origin": "https://evil.example"})
    assert origin_only.status_code == 403
    same_site = await api.client.post(url, data=form, headers={"Sec-Fetch-Site": "same-site"})
    assert same_site.status_code == 403
    no_token = await api.client.post(
        url, data={"reason": "forged"}, headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert (no_token.status_code, no_token.json()["code"]) == (403, "csrf_failed")
    wrong = await api.client.post(url, data={"reason": "forged", "csrf": "0" * 40})
    assert wrong.status_code == 403
    assert counts(api) == (0, 0)  # nothing queued, nothing audited

    ok = await api.client.post(
        url,
        data={"reason": "更换插座", "csrf": token},
        headers={"Origin": "http://api.test", "Sec-Fetch-Site": "same-origin"},
    )
    assert ok.status_code == 303, ok.text
    assert counts(api) == (1, 1)


async def test_the_json_api_with_the_cookie_is_refused_cross_site_bearer_is_not(
    api: Api,
) -> None:
    shed_id, _ = await api.register_shed()
    cookie = await staff_cookie(api)
    url = f"/api/v1/staff/sheds/{shed_id}/sockets/1/disable"
    forged = await api.client.post(url, json={"reason": "forged"}, headers=EVIL)
    assert (forged.status_code, forged.json()["code"]) == (403, "csrf_failed")
    assert counts(api) == (0, 0)
    # The same session as a bearer token (a script, an app): not a browser's cookie.
    api.client.cookies.clear()
    bearer = {**EVIL, "Authorization": f"Bearer {cookie}"}
    answer = await api.client.post(url, json={"reason": "更换插座"}, headers=bearer)
    assert answer.status_code == 200, answer.text
    assert counts(api) == (1, 1)


async def test_the_login_form_is_refused_cross_site(api: Api) -> None:
    await api.user("staff", "demo", login="zhang")
    api.client.cookies.clear()
    forged = await api.client.post(
        "/login", data={"login": "zhang", "password": PASSWORD}, headers=EVIL
    )
    assert forged.status_code == 403
    assert "ebshed_session" not in forged.headers.get("set-cookie", "")


def test_the_token_is_per_session() -> None:
    assert csrf_token("a") != csrf_token("b")
    assert csrf_token("a") == csrf_token("a") and len(csrf_token("a")) == 40
    assert csrf_token(None) == ""
