"""The residents' JSON API around an order: what the QR code shows, who may pay
for a socket, re-scans, expiry, an order whose notification never came."""

from __future__ import annotations

from pathlib import Path

from api.models import Command, Order
from api.payments import WechatPayV3Gateway
from tests.test_orders_harness import PHONE_A, PHONE_B, eventually, pay_env

pytest_plugins = ["tests.api_db"]


async def test_the_qr_code_shows_the_shed_the_socket_and_the_price(db_url: str) -> None:
    async with pay_env(db_url) as env:
        shed = await env.shed(ports=(1, 2, 3, 4, 5, 6))
        for port, state in ((2, "charging"), (3, "fault"), (4, "offline"), (5, "disabled")):
            await shed.socket(port, state)
        await shed.uplink("bay", "1", {"bay": 1, "occupied": True, "since": env.clock.now})

        public = (await env.http.get(f"/api/v1/public/sheds/{shed.shed_id}")).json()
        price = public.pop("price")
        assert public == {
            "shed": shed.shed_id,
            "name": "1号车棚",
            "compound": "演示小区",
            "free_sockets": 2,
            "total_sockets": 6,
            "free_bays": 1,
            "total_bays": 2,
            "online": True,
        }
        assert (price["id"], price["summary_zh"], price["summary_en"]) == (
            "default",
            "1元/4小时",
            "1 yuan per 4 h",
        )

        reasons = {}
        for port in range(1, 7):
            answer = await env.http.get(f"/api/v1/public/sheds/{shed.shed_id}/sockets/{port}")
            assert answer.status_code == 200
            body = answer.json()
            assert body["payable"] is (body["reason"] is None)
            assert body["shed_name"] == "1号车棚" and body["price"] == price
            reasons[port] = (body["state"], body["reason"])
        assert reasons == {
            1: ("idle", None),
            2: ("charging", "busy"),
            3: ("fault", "fault"),
            4: ("offline", "offline"),
            5: ("disabled", "disabled"),
            6: ("idle", None),
        }
        # A socket that cannot be paid for refuses the order with its reason.
        for port, (_, reason) in reasons.items():
            if reason is not None:
                refused = await env.order(shed, port)
                assert (refused.status_code, refused.json()["code"]) == (409, reason)
        assert env.count(Order) == 0

        env.clock.now += 121_000
        offline = (await env.http.get(f"/api/v1/public/sheds/{shed.shed_id}/sockets/1")).json()
        assert (offline["payable"], offline["reason"]) == (False, "shed_offline")
        refused = await env.order(shed, 1)
        assert (refused.status_code, refused.json()["code"]) == (409, "shed_offline")


async def test_a_tariff_the_shed_carried_out_is_the_posted_price(db_url: str) -> None:
    async with pay_env(db_url) as env:
        shed = await env.shed()
        tariff = {
            "id": "tiers",
            "version": 2,
            "name": "按功率",
            "kind": "power_tier",
            "tiers": [{"max_w": 200, "fen_per_hour": "25"}, {"max_w": 1100, "fen_per_hour": "50"}],
        }
        pushed = await env.http.post(
            f"/api/v1/admin/sheds/{shed.shed_id}/commands",
            json={"kind": "tariff", "data": tariff},
            headers=env.admin,
        )
        assert pushed.status_code == 201
        before = (await env.http.get(f"/api/v1/public/sheds/{shed.shed_id}")).json()
        assert before["price"]["id"] == "default"  # not carried out yet
        await shed.answer(await shed.next_command(), True)
        after = (await env.http.get(f"/api/v1/public/sheds/{shed.shed_id}/sockets/1")).json()
        assert after["price"]["id"] == "tiers"
        assert after["price"]["summary_zh"] == "0-200W 1元/4小时，200-1100W 1元/2小时"
        created = await env.new_order(shed, 1)
        with env.db() as db:
            order = db.get(Order, created["out_trade_no"])
            assert order is not None and (order.tariff_id, order.tariff_version) == ("tiers", 2)


async def test_a_rescan_reuses_the_order_and_a_new_choice_replaces_it(db_url: str) -> None:
    async with pay_env(db_url) as env:
        shed = await env.shed()
        first = await env.new_order(shed, 1, mode="amount", amount_fen=200)
        again = await env.order(shed, 1, mode="amount", amount_fen=200)
        assert again.status_code == 200
        assert again.json() == first
        assert len(env.sim.orders) == 1

        # Someone else scanning the same socket meanwhile is refused.
        taken = await env.order(shed, 1, phone=PHONE_B)
        assert (taken.status_code, taken.json()["code"]) == (409, "socket_taken")
        # Another socket is fine for them.
        assert (await env.order(shed, 2, phone=PHONE_B)).status_code == 201

        # The same phone chooses another amount: a new order; the old one is closed.
        second = await env.new_order(shed, 1, mode="amount", amount_fen=300)
        assert second["out_trade_no"] != first["out_trade_no"]
        old = await env.view(first["out_trade_no"])
        assert (old["status"], old["problem"], old["pay_url"]) == ("expired", "superseded", None)
        await env.rt.run_once()
        assert env.sim.orders[first["out_trade_no"]].state == "CLOSED"
        with env.db() as db:
            closed = db.get(Order, first["out_trade_no"])
            assert closed is not None and closed.provider_closed_ms is not None


async def test_an_unpaid_order_expires_and_is_closed_at_the_provider(db_url: str) -> None:
    async with pay_env(db_url) as env:
        shed = await env.shed()
        created = await env.new_order(shed, 1)
        no = created["out_trade_no"]
        assert created["expires_ms"] == env.clock.now + 600_000
        env.clock.now += 599_000
        assert (await env.rt.settler.run_once()) == 0
        taken = await env.order(shed, 1, phone=PHONE_B)
        assert taken.status_code == 409

        env.clock.now += 1_000
        await shed.hello()  # still online
        assert (await env.rt.settler.run_once()) == 1  # asked, then closed
        view = await env.view(no)
        assert (view["status"], view["problem"], view["paid_fen"]) == ("expired", "not_paid", 0)
        assert env.sim.orders[no].state == "CLOSED"
        assert ("GET", f"/v3/pay/transactions/out-trade-no/{no}", 200) in env.sim.requests
        # Free for the next resident.
        assert (await env.order(shed, 1, phone=PHONE_B)).status_code == 201


async def test_a_payment_whose_notification_never_came_is_found_by_asking(db_url: str) -> None:
    async with pay_env(db_url, sim_options={"resend_schedule_s": ()}) as env:
        shed = await env.shed()
        created = await env.new_order(shed, 1)
        no = created["out_trade_no"]
        env.sim.inject_notification_fault("bad_signature")  # the only delivery is lost
        env.sim.simulate_payment(no)
        await env.sim.wait_idle()
        env.nothing_moved(no)

        env.clock.now += 600_000
        await shed.hello()
        await env.rt.settler.run_once()
        view = await env.view(no)
        assert (view["status"], view["paid_fen"]) == ("starting", 500)
        command = await shed.next_command()
        assert command["kind"] == "start_session" and command["data"]["order_no"] == no
        assert env.sim.orders[no].state == "SUCCESS"  # never closed

        # The genuine notification arriving after all changes nothing.
        env.sim.resend(env.sim.notifications[0].notification_id)
        await env.sim.wait_idle()
        assert env.sim.notification_attempts[-1].status == 204
        assert env.count(Command) == 1


async def test_payment_at_the_last_moment_of_a_replaced_order_is_refunded(db_url: str) -> None:
    async with pay_env(db_url) as env:
        shed = await env.shed()
        first = await env.new_order(shed, 1, mode="amount", amount_fen=100)
        await env.new_order(shed, 1, mode="amount", amount_fen=200)
        env.sim.simulate_payment(first["out_trade_no"])  # paid on the old page before it closed
        view = await env.status_becomes(first["out_trade_no"], "refunding")
        assert view["problem"] == "paid_superseded"
        await env.rt.run_once()
        await env.status_becomes(first["out_trade_no"], "refunded")
        await env.money_conserved(first["out_trade_no"])
        assert await shed.poll() == []  # never started


BAD_ORDERS: list[tuple[dict[str, object], int, str]] = [
    ({"mode": "amount"}, 422, "amount_required"),
    ({"mode": "amount", "amount_fen": 10_001}, 422, "amount_too_large"),
    ({"mode": "amount", "amount_fen": 0}, 422, "invalid_request"),
    ({"mode": "amount", "amount_fen": 1.5}, 422, "invalid_request"),
    ({"mode": "amount", "amount_fen": "300"}, 422, "invalid_request"),
    ({"mode": "later"}, 422, "invalid_request"),
    ({"phone": "12345"}, 422, "invalid_request"),
    ({"phone": None}, 422, "phone_required"),
    ({"port": 99}, 404, "unknown_socket"),
    ({"shed_id": "no-such-shed"}, 404, "unknown_shed"),
]


async def test_bad_orders_are_refused(db_url: str) -> None:
    async with pay_env(db_url) as env:
        shed = await env.shed()
        for body, status, code in BAD_ORDERS:
            answer = await env.order(shed, **body)
            got = (answer.status_code, answer.json()["code"])
            assert got == (status, code), (body, answer.text)
        assert env.count(Order) == 0
        assert env.sim.orders == {}


async def test_orders_are_seen_and_stopped_only_while_running(db_url: str) -> None:
    async with pay_env(db_url) as env:
        shed = await env.shed()
        created = await env.new_order(shed, 1)
        no = created["out_trade_no"]
        unknown = await env.http.get("/api/v1/orders/EBNOSUCHORDER1")
        assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_order")
        early = await env.http.post(f"/api/v1/orders/{no}/stop")
        assert (early.status_code, early.json()["code"]) == (409, "not_running")
        view = await env.view(no)
        assert view["pay_url"] == created["pay_url"] and view["session"] is None

        env.sim.simulate_payment(no)
        await env.status_becomes(no, "starting")
        run = await env.start(shed, created)
        first = await env.http.post(f"/api/v1/orders/{no}/stop")
        second = await env.http.post(f"/api/v1/orders/{no}/stop")
        assert first.status_code == second.status_code == 202
        assert first.json()["command_id"] == second.json()["command_id"]  # one stop queued
        await run.close()

        async def settled() -> bool:
            return (await env.view(no))["receipt"] is not None

        await eventually(settled)
        late = await env.http.post(f"/api/v1/orders/{no}/stop")
        assert (late.status_code, late.json()["code"]) == (409, "not_running")


async def test_without_a_provider_orders_are_off(db_url: str) -> None:
    from tests.api_db import start_api

    async with start_api(db_url) as api:
        shed_id, _ = await api.register_shed()
        answer = await api.client.post(
            "/api/v1/orders",
            json={"shed_id": shed_id, "port": 1, "mode": "until_full", "phone": PHONE_A},
        )
        assert (answer.status_code, answer.json()["code"]) == (503, "payments_disabled")
        notify = await api.client.post("/pay/notify/wechatpay", content=b"{}")
        assert notify.status_code == 503


async def test_the_app_wires_its_own_gateway_from_the_demo_credentials(
    db_url: str, tmp_path: Path
) -> None:
    async with pay_env(db_url, credentials=tmp_path / "pay") as env:
        gateway = env.rt.gateway
        assert isinstance(gateway, WechatPayV3Gateway) and gateway is not env.gateway
        shed = await env.shed()
        created = await env.new_order(shed, 1)
        assert created["pay_url"] == f"{env.sim.url}/pay/{created['out_trade_no']}"
        await env.pay_on_page(created)
        await env.status_becomes(created["out_trade_no"], "starting")


async def test_an_order_the_provider_cannot_take_frees_the_socket(db_url: str) -> None:
    async with pay_env(db_url) as env:
        shed = await env.shed()
        env.sim.fail_next_requests(3, after_processing=False)  # every attempt fails
        down = await env.order(shed, 1)
        assert (down.status_code, down.json()["code"]) == (503, "provider_unavailable")
        with env.db() as db:
            (order,) = db.query(Order).all()
            assert (order.status, order.problem, order.code_url) == (
                "expired",
                "create_failed",
                None,
            )
        assert (await env.rt.settler.run_once()) == 1  # the provider never had it
        with env.db() as db:
            closed = db.get(Order, order.out_trade_no)
            assert closed is not None and closed.provider_closed_ms is not None
        assert (await env.order(shed, 1, phone=PHONE_B)).status_code == 201
