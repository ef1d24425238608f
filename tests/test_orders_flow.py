"""Scan-to-pay end to end: order -> pay -> notification -> start -> session ->
bill -> refund of the unused money to the original payment -> REFUND.SUCCESS.

Real HTTP everywhere (see tests/test_orders_harness.py): the provider
simulator with real signatures and encryption, the real gateway, a fake shed
on the real shed endpoints. Every test checks paid = billed + refunded.
"""

from __future__ import annotations

import re

from sqlalchemy import select

from api.models import Alarm, Command, Payment, Refund
from simulators.payment_ledger import Refusal
from tests.test_orders_harness import PHONE_A, PHONE_B, eventually, pay_env

pytest_plugins = ["tests.api_db"]


async def test_pay_charge_stop_and_the_unused_money_goes_back(db_url: str) -> None:
    async with pay_env(db_url, pay_workers=True, pay_worker_interval_ms=100) as env:
        shed = await env.shed()

        # The QR code: the socket and its price, before paying.
        socket = (await env.http.get(f"/api/v1/public/sheds/{shed.shed_id}/sockets/1")).json()
        assert socket["payable"] is True and socket["reason"] is None
        assert socket["price"]["summary_zh"] == "1元/4小时"
        assert (socket["deposit_fen"], socket["amounts_fen"]) == (500, [100, 200, 300, 500])

        created = await env.new_order(shed, 1, mode="until_full", phone=PHONE_A)
        no = created["out_trade_no"]
        assert re.fullmatch(r"[A-Za-z0-9_-]{6,32}", no)
        assert created["status"] == "created" and created["amount_fen"] == 500
        assert created["pay_url"] == f"{env.sim.url}/pay/{no}" == created["code_url"]

        # A second scan by the same phone reuses the unpaid order; someone else is refused.
        again = await env.order(shed, 1, phone=PHONE_A)
        assert again.status_code == 200 and again.json()["out_trade_no"] == no
        other = await env.order(shed, 1, phone=PHONE_B)
        assert other.status_code == 409 and other.json()["code"] == "socket_taken"

        await env.pay_on_page(created)
        await env.status_becomes(no, "starting")
        run = await env.start(shed, created)
        assert (run.port, run.prepaid_fen, run.mode) == (1, 500, "until_full")
        view = await env.status_becomes(no, "charging")
        assert view["paid_fen"] == 500 and view["receipt"] is None

        # Progress comes live from the shed's checkpoints.
        await run.charge(90, 180.0)
        session = (await env.view(no))["session"]
        assert session["state"] == "charging"
        assert (session["w"], session["energy_wh"], session["minutes"]) == (180.0, 270, 90)
        assert session["cost_fen"] == 38  # 90 started minutes at 25 fen/h, rounded half up

        # Stop from the phone: a stop_session for that socket.
        stop = await env.http.post(f"/api/v1/orders/{no}/stop")
        assert stop.status_code == 202
        command = await shed.next_command()
        assert (command["kind"], command["data"]) == (
            "stop_session",
            {"port": 1, "reason": "resident", "order_no": no},
        )
        await shed.answer(command, True)
        closed = await run.close("resident")
        billed = closed["billed_fen"]
        assert billed == 38

        view = await env.status_becomes(no, "refunded")
        receipt = view["receipt"]
        assert receipt["billed_fen"] == billed and receipt["refund_fen"] == 500 - billed
        assert receipt["refund_status"] == "success"
        assert [line["code"] for line in receipt["lines"]] == ["time_tier_1"]
        assert view["session"]["state"] == "ended" and view["session"]["cost_fen"] == billed

        # To the original payment, under the order's own out_refund_no, once.
        refund = env.sim.refunds[f"R{no}"]
        assert (refund.out_trade_no, refund.refund_fen, refund.status) == (no, 462, "SUCCESS")
        assert len(env.sim.refunds) == 1
        await env.money_conserved(no)

        # The socket is free again for the next resident.
        await shed.socket(1, "idle")
        assert (await env.order(shed, 1, phone=PHONE_B)).status_code == 201


async def test_a_refused_start_refunds_everything(db_url: str) -> None:
    async with pay_env(db_url) as env:
        shed = await env.shed()
        created = await env.new_order(shed, 2, mode="amount", amount_fen=300)
        no = created["out_trade_no"]
        env.sim.simulate_payment(no)
        await env.status_becomes(no, "starting")
        command = await shed.next_command()
        assert command["data"] == {
            "port": 2,
            "order_no": no,
            "prepaid_fen": 300,
            "mode": "amount",
        }
        await shed.answer(command, False, code="busy")
        view = await env.status_becomes(no, "refunding")
        assert view["problem"] == "start_refused:busy"
        assert view["receipt"] == {
            "lines": [],
            "billed_fen": 0,
            "refund_fen": 300,
            "refund_status": "pending",
        }
        assert await env.rt.run_once() == {"start_timeouts": 0, "refunds": 1, "settled": 0}
        view = await env.status_becomes(no, "refunded")
        assert env.sim.refunds[f"R{no}"].refund_fen == 300
        assert view["session"] is None
        await env.money_conserved(no)


async def test_no_start_result_within_30_s_refunds_everything(db_url: str) -> None:
    async with pay_env(db_url) as env:
        shed = await env.shed()
        created = await env.new_order(shed, 3)
        no = created["out_trade_no"]
        env.sim.simulate_payment(no)
        await env.status_becomes(no, "starting")
        command = await shed.next_command()  # taken, but the shed never answers

        env.clock.now += 29_000
        assert (await env.rt.start_timeouts.run_once()) == 0
        env.clock.now += 2_000
        assert (await env.rt.start_timeouts.run_once()) == 1
        view = await env.view(no)
        assert (view["status"], view["problem"]) == ("refunding", "start_timeout")
        await env.rt.refund_sender.run_once()
        await env.status_becomes(no, "refunded")
        assert env.sim.refunds[f"R{no}"].refund_fen == 500
        await env.money_conserved(no)

        # The start comes through after all: that session is stopped, never charged twice.
        await shed.answer(command, True, data={"session_id": "late"})
        late = await shed.next_command()
        assert (late["kind"], late["data"]) == (
            "stop_session",
            {"port": 3, "reason": "order_refunded", "order_no": no},
        )
        view = await env.money_conserved(no)
        assert view["receipt"]["billed_fen"] == 0


async def test_a_payment_for_an_offline_shed_is_refunded_and_never_started(db_url: str) -> None:
    async with pay_env(db_url) as env:
        shed = await env.shed()
        created = await env.new_order(shed, 1)
        no = created["out_trade_no"]
        env.clock.now += 121_000  # the shed falls silent
        public = (await env.http.get(f"/api/v1/public/sheds/{shed.shed_id}")).json()
        assert (public["online"], public["free_sockets"]) == (False, 0)

        env.sim.simulate_payment(no)
        view = await env.status_becomes(no, "refunding")
        assert view["problem"] == "shed_offline"
        await env.rt.run_once()
        await env.status_becomes(no, "refunded")
        await env.money_conserved(no)
        with env.db() as db:
            assert db.scalars(select(Command)).all() == []  # no start waits for the shed


async def test_a_refund_that_ends_abnormal_is_flagged_for_staff(db_url: str) -> None:
    async with pay_env(db_url, sim_options={"refund_outcome": "ABNORMAL"}) as env:
        shed = await env.shed()
        created = await env.new_order(shed, 1)
        no = created["out_trade_no"]
        env.sim.simulate_payment(no)
        await env.status_becomes(no, "starting")
        run = await env.start(shed, created)
        await run.charge(30, 200.0)
        await run.close("full")
        await env.rt.run_once()
        view = await env.status_becomes(no, "failed")
        assert view["receipt"]["refund_status"] == "abnormal"
        await env.money_conserved(no)  # what is owed is on the books

        listed = await env.http.get("/api/v1/admin/refunds", headers=env.admin)
        assert [(r["out_refund_no"], r["status"]) for r in listed.json()] == [
            (f"R{no}", "abnormal")
        ]
        with env.db() as db:
            alarm = db.scalar(select(Alarm).where(Alarm.kind == "refund_failed"))
            assert alarm is not None and alarm.active and alarm.port == 1
            assert no in alarm.detail


async def test_a_refund_the_provider_refuses_is_failed_not_lost(db_url: str) -> None:
    async with pay_env(db_url) as env:
        shed = await env.shed()
        created = await env.new_order(shed, 1)
        no = created["out_trade_no"]
        env.sim.simulate_payment(no)
        await env.status_becomes(no, "starting")
        await shed.answer(await shed.next_command(), False, code="fault")
        await env.status_becomes(no, "refunding")
        # The whole order was refunded at the provider already, by other means.
        amount = {"refund": 500, "total": 500}
        body = {"out_trade_no": no, "out_refund_no": "MANUAL-1", "amount": amount}
        assert not isinstance(env.sim.ledger.refund(body, env.clock.now // 1000), Refusal)
        await env.rt.refund_sender.run_once()
        view = await env.status_becomes(no, "failed")
        assert view["receipt"]["refund_status"] == "failed"
        with env.db() as db:
            refund = db.get(Refund, f"R{no}")
            assert refund is not None and "REFUND_AMOUNT_EXCEEDED" in (refund.last_error or "")
        await env.money_conserved(no)

        # Staff send it again; the provider still refuses, and it stays visible.
        retry = await env.http.post(f"/api/v1/admin/refunds/R{no}/retry", headers=env.admin)
        assert retry.status_code == 200 and retry.json()["status"] == "pending"
        await env.rt.refund_sender.run_once()
        assert (await env.view(no))["status"] == "failed"


async def test_a_lost_refund_answer_is_retried_with_the_same_number(db_url: str) -> None:
    async with pay_env(db_url, sim_options={"refund_delay_s": 50}) as env:  # settles in 0.5 s
        shed = await env.shed()
        created = await env.new_order(shed, 1)
        no = created["out_trade_no"]
        env.sim.simulate_payment(no)
        await env.status_becomes(no, "starting")
        await shed.answer(await shed.next_command(), False, code="offline")
        await env.status_becomes(no, "refunding")

        env.sim.fail_next_requests(3, after_processing=True)  # done, but every answer lost
        await env.rt.refund_sender.run_once()
        with env.db() as db:
            refund = db.get(Refund, f"R{no}")
            assert refund is not None
            assert (refund.status, refund.attempts) == ("pending", 1)
        env.clock.now += 5_000
        await env.rt.refund_sender.run_once()
        await env.status_becomes(no, "refunded")
        assert list(env.sim.refunds) == [f"R{no}"]  # one refund at the provider
        await env.money_conserved(no)


async def test_duplicate_payment_notifications_change_nothing(db_url: str) -> None:
    async with pay_env(db_url, sim_options={"duplicate_notifications": 3}) as env:
        shed = await env.shed()
        created = await env.new_order(shed, 1)
        no = created["out_trade_no"]
        env.sim.simulate_payment(no)
        await env.sim.wait_idle()
        attempts = [a for a in env.sim.notification_attempts if a.event_type.startswith("TRANS")]
        assert [a.status for a in attempts] == [204, 204, 204, 204]
        env.sim.resend(attempts[0].notification_id)
        await env.sim.wait_idle()
        assert env.sim.notification_attempts[-1].status == 204

        assert env.count(Payment) == 1
        commands = await shed.poll()
        assert [c["kind"] for c in commands] == ["start_session"]

        async def no_more_commands() -> bool:
            return await shed.poll() == []

        await eventually(no_more_commands)
        assert (await env.view(no))["status"] == "starting"
