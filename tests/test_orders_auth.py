"""Residents log in by SMS code (a simulated sender) and see their own orders only."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from tests.test_orders_harness import PHONE_A, PHONE_B, pay_env

if TYPE_CHECKING:
    from tests.api_db import Api, ApiFactory

pytest_plugins = ["tests.api_db"]


async def sms_code(api: Api, phone: str) -> str:
    outbox = await api.client.get("/api/v1/dev/sms", params={"phone": phone})
    assert outbox.status_code == 200, outbox.text
    newest = outbox.json()[0]
    assert newest["phone"] == phone and "验证码" in newest["text"]
    code: str = newest["code"]
    assert len(code) == 6 and code.isdigit()
    return code


async def test_login_by_sms_code(api_factory: ApiFactory) -> None:
    async with api_factory(dev_endpoints=True) as api:
        sent = await api.client.post("/api/v1/auth/sms", json={"phone": PHONE_A})
        assert sent.status_code == 202
        assert sent.json() == {"sent": True, "expires_in_s": 300, "resend_after_s": 60}
        code = await sms_code(api, PHONE_A)

        login = await api.client.post("/api/v1/auth/login", json={"phone": PHONE_A, "code": code})
        assert login.status_code == 200, login.text
        cookie = login.headers["set-cookie"]
        assert cookie.startswith("ebshed_session=") and "HttpOnly" in cookie
        assert "samesite=lax" in cookie.lower()
        token = login.json()["token"]
        assert login.json()["phone"] == PHONE_A

        mine = await api.client.get("/api/v1/me/sessions")  # the cookie
        assert mine.status_code == 200 and mine.json() == {"phone": PHONE_A, "orders": []}
        bearer = await api.client.get("/api/v1/me/sessions", headers=api.bearer(token))
        assert bearer.status_code == 200

        # A code works once.
        again = await api.client.post("/api/v1/auth/login", json={"phone": PHONE_A, "code": code})
        assert (again.status_code, again.json()["code"]) == (422, "no_code")

        out = await api.client.post("/api/v1/auth/logout")
        assert out.status_code == 204
        api.client.cookies.clear()
        gone = await api.client.get("/api/v1/me/sessions", headers=api.bearer(token))
        assert (gone.status_code, gone.json()["code"]) == (401, "unauthorized")


async def test_codes_are_rate_limited_and_guesses_are_few(api_factory: ApiFactory) -> None:
    async with api_factory(dev_endpoints=True, sms_per_address_per_hour=50) as api:
        assert (
            await api.client.post("/api/v1/auth/sms", json={"phone": PHONE_A})
        ).status_code == 202
        soon = await api.client.post("/api/v1/auth/sms", json={"phone": PHONE_A})
        assert (soon.status_code, soon.json()["code"]) == (429, "sms_too_soon")
        code = await sms_code(api, PHONE_A)
        wrong = "000000" if code != "000000" else "111111"
        codes = []
        for _ in range(5):
            answer = await api.client.post(
                "/api/v1/auth/login", json={"phone": PHONE_A, "code": wrong}
            )
            codes.append((answer.status_code, answer.json()["code"]))
        assert codes == [(400, "wrong_code")] * 4 + [(429, "too_many_attempts")]
        # Burned: even the right code no longer works.
        right = await api.client.post("/api/v1/auth/login", json={"phone": PHONE_A, "code": code})
        assert (right.status_code, right.json()["code"]) == (429, "too_many_attempts")

        api.clock.now += 60_000  # a new code may be asked for, and it works
        assert (
            await api.client.post("/api/v1/auth/sms", json={"phone": PHONE_A})
        ).status_code == 202
        fresh = await sms_code(api, PHONE_A)
        ok = await api.client.post("/api/v1/auth/login", json={"phone": PHONE_A, "code": fresh})
        assert ok.status_code == 200

        for _ in range(8):  # 10 codes a day at most
            api.clock.now += 60_000
            await api.client.post("/api/v1/auth/sms", json={"phone": PHONE_A})
        api.clock.now += 60_000
        daily = await api.client.post("/api/v1/auth/sms", json={"phone": PHONE_A})
        assert (daily.status_code, daily.json()["code"]) == (429, "sms_daily_limit")

        bad = await api.client.post("/api/v1/auth/sms", json={"phone": "555"})
        assert bad.status_code == 422


async def test_the_sms_outbox_is_dev_only(api: Api) -> None:
    assert (await api.client.post("/api/v1/auth/sms", json={"phone": PHONE_A})).status_code == 202
    hidden = await api.client.get("/api/v1/dev/sms", params={"phone": PHONE_A})
    assert hidden.status_code == 404
    anonymous = await api.client.get("/api/v1/me/sessions")
    assert anonymous.status_code == 401


async def test_residents_see_their_own_orders_only(db_url: str) -> None:
    async with pay_env(db_url) as env:
        shed = await env.shed()
        mine = await env.new_order(shed, 1, phone=PHONE_A)
        theirs = await env.new_order(shed, 2, phone=PHONE_B)
        for created in (mine, theirs):
            env.sim.simulate_payment(created["out_trade_no"])
            await env.status_becomes(created["out_trade_no"], "starting")
        for command in await shed.poll():
            await shed.answer(command, False, code="busy")
        await env.rt.run_once()
        await env.status_becomes(mine["out_trade_no"], "refunded")
        unpaid = await env.new_order(shed, 3, phone=PHONE_A)  # not paid: not listed

        await env.http.post("/api/v1/auth/sms", json={"phone": PHONE_A})
        outbox = (await env.http.get("/api/v1/dev/sms", params={"phone": PHONE_A})).json()
        login = await env.http.post(
            "/api/v1/auth/login", json={"phone": PHONE_A, "code": outbox[0]["code"]}
        )
        assert login.status_code == 200
        listed = (await env.http.get("/api/v1/me/sessions")).json()
        assert listed["phone"] == PHONE_A
        assert [o["out_trade_no"] for o in listed["orders"]] == [mine["out_trade_no"]]
        assert unpaid["out_trade_no"] not in str(listed)
        receipt = listed["orders"][0]["receipt"]
        assert receipt == {
            "lines": [],
            "billed_fen": 0,
            "refund_fen": 500,
            "refund_status": "success",
        }

        # Logged in, an order needs no phone in the body: it is the resident's.
        env.http.cookies.clear()
        env.http.cookies.set("ebshed_session", login.json()["token"])
        own = await env.http.post(
            "/api/v1/orders", json={"shed_id": shed.shed_id, "port": 4, "mode": "until_full"}
        )
        assert own.status_code == 201
        env.http.cookies.clear()
        env.http.cookies.set("ebshed_session", "not-a-login")
        anonymous = await env.http.post(
            "/api/v1/orders", json={"shed_id": shed.shed_id, "port": 4, "mode": "until_full"}
        )
        assert (anonymous.status_code, anonymous.json()["code"]) == (422, "phone_required")


async def test_sms_codes_are_limited_per_address_and_for_everyone(
    api_factory: ApiFactory,
) -> None:
    async with api_factory(dev_endpoints=True, sms_per_hour=14) as api:
        phones = [f"1380013{n:04d}" for n in range(16)]
        answers = [
            await api.client.post("/api/v1/auth/sms", json={"phone": phone}) for phone in phones
        ]
        codes = [(a.status_code, a.json().get("code")) for a in answers]
        # 16 phones from one address: 10 codes (sms_per_address_per_hour), 6 refused.
        assert codes == [(202, None)] * 10 + [(429, "rate_limited")] * 6
        assert "sms per address" in answers[-1].json()["message"]
        assert answers[-1].json()["scope"] == "sms per address"
        outbox = (await api.client.get("/api/v1/dev/sms")).json()
        assert len(outbox) == 10
        # Other addresses share the bound for all clients (14 an hour here).
        others = []
        for n, phone in enumerate(phones[10:]):
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=api.app, client=(f"10.0.0.{n + 1}", 4000)),
                base_url="http://api.test",
            )
            async with client:
                others.append(await client.post("/api/v1/auth/sms", json={"phone": phone}))
        assert [a.status_code for a in others] == [202] * 4 + [429] * 2
        assert others[-1].json()["scope"] == "sms, all clients"
        api.clock.now += 3_600_000  # a new hour
        again = await api.client.post("/api/v1/auth/sms", json={"phone": phones[15]})
        assert again.status_code == 202
