"""Accounts: password login, sessions, throttling, and what a Principal may do."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from api.access import Grant, Principal
from api.db import make_engine, make_sessionmaker
from api.errors import Conflict, Invalid, NotFound
from api.models import User
from api.services.accounts import GrantSpec, create_user, grants_of
from api.services.passwords import hash_password, verify_password
from controller.cli import app

if TYPE_CHECKING:
    from tests.api_db import Api, ApiFactory

pytest_plugins = ["tests.api_db"]

PASSWORD = "correct horse battery"


def principal(*grants: tuple[str, str | None]) -> Principal:
    return Principal(1, "x", "x", frozenset(Grant(r, c) for r, c in grants))


def test_grants_are_scoped_to_compounds() -> None:
    staff = principal(("staff", "a"), ("office", "b"))
    assert staff.has("staff", "a")
    assert not staff.has("staff", "b")
    assert not staff.has("staff", None)  # not "every compound"
    assert staff.has("office", "b") and not staff.has("office", "a")
    assert not staff.has("admin", "a")
    assert staff.compounds("staff") == frozenset({"a"})
    assert staff.compounds("staff", "office") == frozenset({"a", "b"})
    assert staff.compounds("admin") == frozenset()
    assert staff.home() == "/board"


def test_an_admin_of_every_compound_counts_everywhere_and_as_every_role() -> None:
    admin = principal(("admin", None))
    assert admin.has("admin", "anywhere") and admin.has("admin", None)
    assert admin.has("staff", "a") and admin.has("office", "z")
    assert admin.compounds("office") is None
    local_admin = principal(("admin", "a"))
    assert local_admin.has("staff", "a") and not local_admin.has("staff", "b")
    assert not local_admin.has("admin", None)
    assert local_admin.compounds("office") == frozenset({"a"})


def test_homes_follow_the_roles() -> None:
    assert principal(("office", "a")).home() == "/reports"
    assert principal().home() == "/me"
    assert principal(("resident", "a")).home() == "/me"


def test_passwords_are_argon2id_hashes() -> None:
    hashed = hash_password(PASSWORD)
    assert hashed.startswith("$argon2id$") and PASSWORD not in hashed
    assert verify_password(hashed, PASSWORD)
    assert not verify_password(hashed, PASSWORD + "!")
    assert not verify_password(None, PASSWORD)
    assert not verify_password("not a hash", PASSWORD)


async def test_create_user_checks_its_input(api: Api) -> None:
    await api.register_shed()  # compound "demo"
    with api.app.state.ctx.sessions() as db, db.begin():
        user = create_user(
            db, login=" Zhang.Wei ", name="张伟", password=PASSWORD,
            grants=[GrantSpec("staff", "demo")], now_ms=api.clock.now,
        )  # fmt: skip
        assert user.login == "zhang.wei"
    bad = [
        ({"login": "-x"}, Invalid, "bad_login"),
        ({"password": "short"}, Invalid, "bad_password"),
        ({"grants": [GrantSpec("boss", None)]}, Invalid, "bad_role"),
        ({"grants": [GrantSpec("staff", "nowhere")]}, NotFound, "unknown_compound"),
        ({"login": "zhang.wei"}, Conflict, "login_exists"),
    ]
    for change, error, code in bad:
        args = {"login": "li", "name": "", "password": PASSWORD, "grants": []} | change
        with api.app.state.ctx.sessions() as db, db.begin(), pytest.raises(error) as info:
            create_user(db, now_ms=api.clock.now, **args)  # type: ignore[arg-type]
        assert info.value.code == code
    with api.app.state.ctx.sessions() as db:
        assert db.scalars(select(User.login).where(User.login.is_not(None))).all() == ["zhang.wei"]


async def test_password_login_cookie_token_me_and_logout(api: Api) -> None:
    headers = await api.user("staff", "demo", login="wang")
    me = await api.client.get("/api/v1/auth/me", headers=headers)
    assert me.status_code == 200
    assert me.json() == {
        "user_id": me.json()["user_id"],
        "login": "wang",
        "name": "wang",
        "grants": [{"role": "staff", "compound_id": "demo"}],
        "home": "/board",
    }

    login = await api.client.post(
        "/api/v1/auth/password", json={"login": "WANG", "password": PASSWORD}
    )
    assert login.status_code == 200
    cookie = login.headers["set-cookie"]
    assert cookie.startswith("ebshed_session=") and "HttpOnly" in cookie
    assert login.json()["expires_ms"] == api.clock.now + 12 * 3_600_000
    assert (await api.client.get("/api/v1/auth/me")).json()["login"] == "wang"  # the cookie

    assert (await api.client.post("/api/v1/auth/logout")).status_code == 204
    api.client.cookies.clear()
    again = await api.client.get("/api/v1/auth/me", headers=api.bearer(login.json()["token"]))
    assert (again.status_code, again.json()["code"]) == (401, "unauthorized")
    # The other login (headers) is still valid; it expires after 12 hours.
    assert (await api.client.get("/api/v1/auth/me", headers=headers)).status_code == 200
    api.clock.now += 12 * 3_600_000
    assert (await api.client.get("/api/v1/auth/me", headers=headers)).status_code == 401


async def test_wrong_passwords_and_unknown_logins_look_the_same(api: Api) -> None:
    await api.user("staff", "demo", login="wang")
    for body in ({"login": "wang", "password": "wrong password"},
                 {"login": "nobody", "password": PASSWORD}):  # fmt: skip
        answer = await api.client.post("/api/v1/auth/password", json=body)
        assert answer.status_code == 401
        assert answer.json() == {
            "code": "bad_credentials",
            "message": "unknown login or wrong password",
        }
    empty = await api.client.post("/api/v1/auth/password", json={"login": "wang"})
    assert (empty.status_code, empty.json()["code"]) == (422, "invalid_request")


async def test_logins_back_off_per_name_and_address(api_factory: ApiFactory) -> None:
    async with api_factory(
        login_failures_per_name=3, login_backoff_ms=10_000, login_lockout_s=60
    ) as api:
        await api.user("staff", "demo", login="wang")
        url, wrong = "/api/v1/auth/password", {"login": "wang", "password": "guess guess"}
        codes = [(await api.client.post(url, json=wrong)).json()["code"] for _ in range(4)]
        assert codes == ["bad_credentials", "bad_credentials", "too_many_attempts",
                         "too_many_attempts"]  # fmt: skip
        right = await api.client.post(url, json={"login": "wang", "password": PASSWORD})
        assert (right.status_code, right.json()["code"]) == (429, "too_many_attempts")
        assert "10 s" in right.json()["message"]
        api.clock.now += 10_000
        # Each further failure doubles the wait: 20 s, then 40 s, at most 60 s.
        assert (await api.client.post(url, json=wrong)).json()["code"] == "too_many_attempts"
        api.clock.now += 10_000
        assert (await api.client.post(url, json=wrong)).json()["code"] == "too_many_attempts"
        api.clock.now += 19_000
        assert (await api.client.post(url, json=wrong)).json()["code"] == "too_many_attempts"
        # Meanwhile the right password from another address is not held up.
        elsewhere = await _from_address(api, "10.9.9.9").post(
            url, json={"login": "wang", "password": PASSWORD}
        )
        assert elsewhere.status_code == 200, elsewhere.text
        api.clock.now += 60_000
        assert (
            await api.client.post(url, json={"login": "wang", "password": PASSWORD})
        ).status_code == 200
        # A good login clears the pair's count: two more failures do not back off.
        for _ in range(2):
            assert (await api.client.post(url, json=wrong)).json()["code"] == "bad_credentials"


def _from_address(api: Api, host: str) -> httpx.AsyncClient:
    """A second client of the same app, seen from another address."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app, client=(host, 40000)),
        base_url="http://api.test",
    )


async def test_guessing_from_an_address_does_not_lock_out_its_right_password(
    api_factory: ApiFactory,
) -> None:
    async with api_factory(login_failures_per_address=3, login_failure_window_s=60) as api:
        await api.user("staff", "demo", login="wang")
        url = "/api/v1/auth/password"
        for i in range(3):  # guessing many names from one address
            answer = await api.client.post(url, json={"login": f"a{i}", "password": "x"})
            assert answer.json()["code"] == "bad_credentials"
        # Past the address's failures every new failure there backs off at once...
        fourth = await api.client.post(url, json={"login": "a4", "password": "x"})
        assert fourth.json()["code"] == "too_many_attempts"
        again = await api.client.post(url, json={"login": "a4", "password": "y"})
        assert again.json()["code"] == "too_many_attempts"
        # ...but the right password of a name not guessed there still logs in.
        right = await api.client.post(url, json={"login": "wang", "password": PASSWORD})
        assert right.status_code == 200, right.text


async def test_login_attempts_are_rate_limited_per_address(api_factory: ApiFactory) -> None:
    async with api_factory(logins_per_address_per_min=5) as api:
        url = "/api/v1/auth/password"
        codes = [
            (await api.client.post(url, json={"login": f"n{i}", "password": "x"})).status_code
            for i in range(7)
        ]
        assert codes == [401] * 5 + [429] * 2
        limited = await api.client.post(url, json={"login": "n9", "password": "x"})
        assert limited.json()["code"] == "rate_limited"
        assert limited.headers["Retry-After"] == "60"
        other = await _from_address(api, "10.9.9.8").post(
            url, json={"login": "n9", "password": "x"}
        )
        assert other.status_code == 401  # another address is not slowed
        api.clock.now += 60_000
        assert (
            await api.client.post(url, json={"login": "n9", "password": "x"})
        ).status_code == 401


async def test_a_disabled_user_cannot_log_in_and_is_logged_out(api: Api) -> None:
    headers = await api.user("staff", "demo", login="wang")
    with api.app.state.ctx.sessions() as db, db.begin():
        user = db.scalars(select(User).where(User.login == "wang")).one()
        user.disabled = True
    assert (await api.client.get("/api/v1/auth/me", headers=headers)).status_code == 401
    answer = await api.client.post(
        "/api/v1/auth/password", json={"login": "wang", "password": PASSWORD}
    )
    assert answer.json()["code"] == "bad_credentials"


async def test_admin_routes_take_the_token_or_an_admin_of_every_compound(api: Api) -> None:
    url = "/api/v1/admin/compounds"
    admin = await api.user("admin", None)
    assert (await api.client.get(url, headers=admin)).status_code == 200
    for role, compound in (("admin", "demo"), ("staff", "demo"), ("office", None), (None, None)):
        headers = await api.user(role, compound)
        answer = await api.client.get(url, headers=headers)
        assert (answer.status_code, answer.json()["code"]) == (403, "forbidden"), role
    assert (await api.client.get(url, headers=api.admin)).status_code == 200


def test_ebshed_user_add_makes_the_first_admin(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'central.sqlite'}"
    run = CliRunner().invoke
    first = run(app, ["user", "add", "boss", "--name", "老板", "--password-stdin",
                      "--database-url", url], input=PASSWORD + "\n")  # fmt: skip
    assert first.exit_code == 0, first.output
    assert "user boss (id 1): admin in every compound" in first.output
    again = run(app, ["user", "add", "boss", "--password-stdin", "--database-url", url],
                input=PASSWORD + "\n")  # fmt: skip
    assert again.exit_code == 2 and "[login_exists]" in again.output
    short = run(app, ["user", "add", "li", "--password-stdin", "--database-url", url],
                input="short\n")  # fmt: skip
    assert short.exit_code == 2 and "[bad_password]" in short.output
    args = ["user", "add", "li", "--role", "staff", "--compound", "nowhere"]
    nowhere = run(app, [*args, "--password-stdin", "--database-url", url], input=PASSWORD + "\n")
    assert nowhere.exit_code == 2 and "[unknown_compound]" in nowhere.output
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as db:
            boss = db.scalars(select(User).where(User.login == "boss")).one()
            assert boss.name == "老板" and verify_password(boss.password_hash, PASSWORD)
            assert [(g.role, g.compound_id) for g in grants_of(db, boss.id)] == [("admin", None)]
            assert db.scalars(select(User.login)).all() == ["boss"]
    finally:
        engine.dispose()


async def test_old_throttle_counters_are_forgotten(api_factory: ApiFactory) -> None:
    from api.models import LoginThrottle

    async with api_factory() as api:
        await api.client.post("/api/v1/auth/sms", json={"phone": "13800138000"})
        api.clock.now += 86_400_000 + 1
        await api.client.post("/api/v1/auth/password", json={"login": "guessed", "password": "x"})
        with api.app.state.ctx.sessions() as db, db.begin():
            db.add(LoginThrottle(key="pair:old|10.0.0.1", window_start_ms=0, failures=9,
                                 locked_until_ms=api.clock.now + 60_000))  # fmt: skip
        with api.app.state.ctx.sessions() as db:
            keys = set(db.scalars(select(LoginThrottle.key)).all())
        assert "rate:sms:address=127.0.0.1" in keys and "pair:guessed|127.0.0.1" in keys
        api.app.state.staff.sweep_once()
        with api.app.state.ctx.sessions() as db:
            left = set(db.scalars(select(LoginThrottle.key)).all())
        assert "rate:sms:address=127.0.0.1" not in left  # a day old: forgotten
        assert "rate:sms:api" not in left
        assert {"pair:guessed|127.0.0.1", "pair:old|10.0.0.1"} <= left  # fresh, or locked
