"""Socket holds (docs/security.md): an unpaid order keeps other residents from
its socket for `order_hold_s` at most, one client holds at most
`order_unpaid_per_client` unpaid orders, and order creation is rate-limited."""

from __future__ import annotations

from typing import Any

import httpx

from api.models import Order
from tests.test_orders_harness import PHONE_A, PHONE_B, PayEnv, pay_env

pytest_plugins = ["tests.api_db"]


def from_address(env: PayEnv, host: str) -> httpx.AsyncClient:
    """Another resident's phone: the same API, seen from another address."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=env.app, client=(host, 40000)),
        base_url="http://api.test",
    )


def body(shed_id: str, port: int, phone: str) -> dict[str, Any]:
    return {"shed_id": shed_id, "port": port, "mode": "until_full", "phone": phone}


async def test_one_client_cannot_block_every_socket(db_url: str) -> None:
    async with pay_env(db_url, orders_per_address_per_min=1000) as env:
        shed = await env.shed(tuple(range(1, 31)))
        answers = [await env.order(shed, port, phone=f"1380000{port:04d}") for port in range(1, 31)]
        codes = [(a.status_code, a.json().get("code")) for a in answers]
        assert codes[:2] == [(201, None)] * 2
        assert codes[2:] == [(429, "too_many_unpaid")] * 28
        # The other residents find 28 free sockets.
        async with from_address(env, "10.0.0.7") as phone:
            others = [
                await phone.post("/api/v1/orders", json=body(shed.shed_id, port, PHONE_B))
                for port in (3, 30)
            ]
        assert [a.status_code for a in others] == [201, 201]


async def test_an_unpaid_order_gives_way_after_its_hold(db_url: str) -> None:
    async with pay_env(db_url, order_hold_s=90) as env:
        shed = await env.shed()
        first = await env.new_order(shed, 1, phone=PHONE_A)
        async with from_address(env, "10.0.0.8") as phone:
            taken = await phone.post("/api/v1/orders", json=body(shed.shed_id, 1, PHONE_B))
            assert (taken.status_code, taken.json()["code"]) == (409, "socket_taken")
            env.clock.now += 89_000
            still = await phone.post("/api/v1/orders", json=body(shed.shed_id, 1, PHONE_B))
            assert (still.status_code, still.json()["code"]) == (409, "socket_taken")
            env.clock.now += 1_000
            mine = await phone.post("/api/v1/orders", json=body(shed.shed_id, 1, PHONE_B))
            assert mine.status_code == 201, mine.text
        with env.db() as db:
            old = db.get(Order, first["out_trade_no"])
            assert old is not None and (old.status, old.problem) == ("expired", "hold_lapsed")
        # The first phone still pays at the last moment: its money goes back in full.
        env.sim.simulate_payment(first["out_trade_no"])
        await env.sim.wait_idle()
        await env.rt.run_once()
        view = await env.view(first["out_trade_no"])
        assert view["status"] in ("refunding", "refunded"), view
        new = await env.view(mine.json()["out_trade_no"])
        assert new["status"] == "created"


async def test_a_client_is_counted_by_address_and_by_device(db_url: str) -> None:
    async with pay_env(db_url, orders_per_address_per_min=1000) as env:
        shed = await env.shed(tuple(range(1, 9)))
        # One address: two orders under two phones; a third phone is still that client.
        async with from_address(env, "10.0.1.1") as phone:
            for port, number in ((1, "13800000001"), (2, "13800000002")):
                made = await phone.post("/api/v1/orders", json=body(shed.shed_id, port, number))
                assert made.status_code == 201, made.text
            third = await phone.post("/api/v1/orders", json=body(shed.shed_id, 3, "13800000003"))
            assert (third.status_code, third.json()["code"]) == (429, "too_many_unpaid")
        # One device cookie from two addresses: the same client.
        async with from_address(env, "10.0.2.1") as one:
            made = await one.post("/api/v1/orders", json=body(shed.shed_id, 4, "13900000001"))
            assert made.status_code == 201
            device = one.cookies["ebshed_device"]
        async with from_address(env, "10.0.2.2") as two:
            two.cookies.set("ebshed_device", device)
            made = await two.post("/api/v1/orders", json=body(shed.shed_id, 5, "13900000002"))
            assert made.status_code == 201
            third = await two.post("/api/v1/orders", json=body(shed.shed_id, 6, "13900000003"))
            assert (third.status_code, third.json()["code"]) == (429, "too_many_unpaid")
        # Once the hold is over those orders count no more.
        env.clock.now += 90_000
        async with from_address(env, "10.0.1.1") as phone:
            again = await phone.post("/api/v1/orders", json=body(shed.shed_id, 3, "13800000003"))
            assert again.status_code == 201, again.text


async def test_order_creation_is_rate_limited(db_url: str) -> None:
    async with pay_env(
        db_url, order_unpaid_per_client=20, orders_per_phone_per_min=3, orders_per_min=5
    ) as env:
        shed = await env.shed(tuple(range(1, 9)))
        codes = [(await env.order(shed, port, phone=PHONE_A)).status_code for port in (1, 2, 3)]
        assert codes == [201, 201, 201]
        limited = await env.order(shed, 4, phone=PHONE_A)
        assert (limited.status_code, limited.json()["code"]) == (429, "rate_limited")
        assert limited.json()["scope"] == "orders per phone"
        assert limited.headers["Retry-After"] == "60"
        assert (await env.order(shed, 4, phone=PHONE_B)).status_code == 201
        assert (await env.order(shed, 5, phone="13700137000")).status_code == 201
        everyone = await env.order(shed, 6, phone="13600136000")
        assert (everyone.status_code, everyone.json()["scope"]) == (429, "orders, all clients")
        with env.db() as db:
            assert db.query(Order).count() == 5  # refused requests made nothing
        env.clock.now += 60_000
        assert (await env.order(shed, 6, phone=PHONE_A)).status_code == 201


async def test_the_socket_page_says_why_a_third_unpaid_order_is_refused(db_url: str) -> None:
    async with pay_env(db_url) as env:
        shed = await env.shed()
        for port in (1, 2):
            await env.new_order(shed, port, phone=PHONE_A)
        page = await env.http.post(
            f"/s/{shed.shed_id}/3", data={"choice": "until_full", "phone": PHONE_B}
        )
        assert page.status_code == 429, page.text
        assert "您已有两笔未支付的订单" in page.text
