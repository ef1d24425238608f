"""The notify_url refuses what it must (payments-v1 rules 1-3) and changes nothing.

Each bad notification reaches the API over real HTTP from the provider
simulator (or, for a replay, with the provider's own key): it gets a 4xx, the
reason is recorded, and no payment, start command or refund exists after it.
Then a genuine copy of the same notification is applied, once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from api.models import Command, NotificationLog, Payment, Refund
from simulators import payment_wire as wire
from tests.test_orders_harness import ACCOUNT, PayEnv, pay_env

pytest_plugins = ["tests.api_db"]

NO_RESENDS: dict[str, Any] = {"resend_schedule_s": ()}


def refused_codes(env: PayEnv) -> list[str]:
    with env.db() as db:
        rows = db.scalars(select(NotificationLog).order_by(NotificationLog.id))
        return [row.code for row in rows]


FAULTS = {
    "bad_signature": "bad_signature",
    "stale_timestamp": "stale_timestamp",
    "tampered_ciphertext": "decrypt_failed",
    "unknown_serial": "unknown_serial",
}


async def test_a_forged_or_damaged_notification_is_refused(db_url: str) -> None:
    async with pay_env(db_url, sim_options=NO_RESENDS) as env:
        shed = await env.shed(ports=tuple(range(1, len(FAULTS) + 1)))
        for port, (fault, code) in enumerate(FAULTS.items(), start=1):
            created = await env.new_order(shed, port)
            no = created["out_trade_no"]
            env.sim.inject_notification_fault(fault)  # type: ignore[arg-type]
            env.sim.simulate_payment(no)
            await env.sim.wait_idle()
            attempt = env.sim.notification_attempts[-1]
            assert (attempt.status, attempt.fault) == (400, fault)
            env.nothing_moved(no)
            assert refused_codes(env) == [code]

            env.sim.resend(attempt.notification_id)  # genuine, as the provider resends it
            await env.sim.wait_idle()
            assert env.sim.notification_attempts[-1].status == 204
            assert (await env.view(no))["status"] == "starting"
            assert env.count(Payment) == 1
            await shed.answer(await shed.next_command(), False, code="busy")
            await env.status_becomes(no, "refunding")
            await env.rt.run_once()
            await env.status_becomes(no, "refunded")
            await env.money_conserved(no)
            with env.db() as db:  # a clean slate for the next fault
                for model in (NotificationLog, Payment, Refund, Command):
                    db.execute(delete(model))
                db.commit()


async def test_a_notification_for_another_amount_is_refused(db_url: str) -> None:
    async with pay_env(db_url, sim_options=NO_RESENDS) as env:
        shed = await env.shed()
        created = await env.new_order(shed, 1)
        no = created["out_trade_no"]
        env.sim.ledger.orders[no].amount_fen = 1  # the provider reports 1 fen paid
        env.sim.simulate_payment(no)
        await env.sim.wait_idle()
        assert [a.status for a in env.sim.notification_attempts] == [400]
        env.nothing_moved(no)
        assert refused_codes(env) == ["wrong_amount"]


async def test_a_notification_for_an_unknown_order_is_refused(db_url: str) -> None:
    async with pay_env(db_url, sim_options=NO_RESENDS) as env:
        # An order made at the provider with our notify_url, but never by this API.
        when = datetime.fromtimestamp(env.clock.now / 1000, UTC) + timedelta(minutes=10)
        await env.gateway.create_order("EBFOREIGN0001", "别处的订单", 300, when, env.rt.notify_url)
        env.sim.simulate_payment("EBFOREIGN0001")
        await env.sim.wait_idle()
        assert [a.status for a in env.sim.notification_attempts] == [400]
        assert refused_codes(env) == ["unknown_order"]
        assert env.count(Payment) == 0


async def test_a_replayed_notification_is_refused_after_300_s(db_url: str) -> None:
    async with pay_env(db_url) as env:
        shed = await env.shed()
        created = await env.new_order(shed, 1)
        no = created["out_trade_no"]
        env.sim.simulate_payment(no)
        await env.sim.wait_idle()
        note = env.sim.notifications[0]
        sent_at = env.sim.notification_attempts[0].sent_at_s
        assert (await env.view(no))["status"] == "starting"

        # An attacker replays the captured request, byte for byte, later.
        captured = wire.signature_headers(
            ACCOUNT.platform_private_key, ACCOUNT.platform_serial, str(sent_at), "N" * 32, note.body
        )
        replay = {**captured, "Content-Type": "application/json"}
        same_time = await env.http.post("/pay/notify/wechatpay", content=note.body, headers=replay)
        assert same_time.status_code == 204  # within the window it is a duplicate: no change
        env.clock.now += 301_000
        later = await env.http.post("/pay/notify/wechatpay", content=note.body, headers=replay)
        assert later.status_code == 400
        assert later.json() == {"code": "FAIL", "message": "stale_timestamp"}
        assert env.count(Payment) == 1
        commands = await shed.poll()
        assert [c["kind"] for c in commands] == ["start_session"]


async def test_garbage_is_refused_with_the_reason(db_url: str) -> None:
    async with pay_env(db_url) as env:
        no_headers = await env.http.post("/pay/notify/wechatpay", content=b"{}")
        assert no_headers.status_code == 400
        assert no_headers.json() == {"code": "FAIL", "message": "bad_headers"}
        refused = await env.http.get("/api/v1/admin/notifications/refused", headers=env.admin)
        assert [n["code"] for n in refused.json()] == ["bad_headers"]


async def test_copies_arriving_at_once_are_applied_once(db_url: str) -> None:
    async with pay_env(db_url, sim_options=NO_RESENDS) as env:
        shed = await env.shed()
        created = await env.new_order(shed, 1)
        no = created["out_trade_no"]
        env.sim.inject_notification_fault("bad_signature")  # hold the first one back
        env.sim.simulate_payment(no)
        await env.sim.wait_idle()
        notification_id = env.sim.notifications[0].notification_id
        for _ in range(6):  # six genuine copies in flight together
            env.sim.resend(notification_id)
        await env.sim.wait_idle()
        statuses = [a.status for a in env.sim.notification_attempts[1:]]
        assert statuses == [204] * 6
        assert env.count(Payment) == 1
        assert env.count(Command) == 1
        assert (await env.view(no))["paid_fen"] == 500
