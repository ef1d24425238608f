"""A closed session's receipt adds up to what was charged, to the fen (docs/tariffs.md,
"The bill a session closes with"): nothing drawn, a start that failed, a prepaid cap."""

from __future__ import annotations

from controller.core.model import Authorization, SendCommand, Session
from controller.core.tariffs import Tariff, Usage, closing_bill, tariff_from_dict
from firmware_bridge.messages import CmdAck
from tests.core_helpers import ORDER, T0, Rig, make_rig

# 1 fen a minute with a 0.50 元 start fee: a session that draws nothing still has lines.
START_FEE = tariff_from_dict({
    "id": "fee", "version": 1, "name": "起步费", "kind": "power_tier", "start_fee_fen": 50,
    "tiers": [{"max_w": 1100, "fen_per_hour": "60"}],
})  # fmt: skip


def rig_with(tariff: Tariff) -> Rig:
    rig = make_rig()
    rig.core.tariff = tariff
    return rig


def adds_up(s: Session) -> None:
    assert s.bill is not None
    assert sum(line.amount_fen for line in s.bill.lines) == s.bill.total_fen == s.charged_fen
    if s.auth.prepaid_fen is not None:
        assert s.charged_fen + s.refund_fen == s.auth.prepaid_fen


def test_a_session_that_drew_nothing_is_not_charged_and_its_lines_say_so() -> None:
    rig = rig_with(START_FEE)
    session = rig.authorize(3, ORDER)
    rig.run(310, 0.0)  # plugged in, nothing flows: no_load
    assert session.end_reason == "no_load" and session.energy_wh == 0
    adds_up(session)
    assert (session.charged_fen, session.refund_fen) == (0, 500)
    assert session.bill is not None
    codes = [(line.code, line.amount_fen) for line in session.bill.lines]
    assert codes == [("start_fee", 50), ("time_tier_1", 5), ("not_charged", -55)]
    last = session.bill.lines[-1]
    assert (last.label_zh, last.label_en) == ("未用电，不收费", "Nothing drawn, not charged")
    assert (last.quantity, last.unit) == (0, "Wh")


def test_a_start_that_failed_is_not_charged_and_says_why() -> None:
    rig = rig_with(START_FEE)
    rig.auto_ack = False
    session = rig.authorize(1, ORDER)
    on = next(a.cmd for a in rig.actions if isinstance(a, SendCommand))
    rig.auto_ack = True
    rig.feed(CmdAck(1, on.id, False, False, "timeout"))
    assert session.end_reason == "start_failed"
    adds_up(session)
    assert session.bill is not None
    assert [(line.code, line.amount_fen) for line in session.bill.lines] == [("not_charged", 0)]
    assert session.bill.lines[0].label_zh == "未能开始充电，不收费"  # no minutes: it never ran


def test_a_bill_above_the_prepaid_amount_shows_the_cap_as_a_line() -> None:
    rig = rig_with(START_FEE)
    session = rig.authorize(1, Authorization("order", "o-cap", 60, "amount"))
    rig.run(40 * 60, {1: 300.0, 2: 0, 3: 0, 4: 0})
    assert not session.open
    adds_up(session)
    assert session.charged_fen == 60 and session.bill is not None
    assert session.bill.lines[-1].code == "prepaid_cap"


def test_a_session_that_drew_energy_is_billed_as_computed() -> None:
    rig = rig_with(START_FEE)
    session = rig.authorize(2, ORDER)
    rig.run(10 * 60, {1: 0, 2: 200.0, 3: 0, 4: 0})
    rig._record(rig.core.stop(2, "resident", rig.now)[1])
    rig.run(20, 0.0)
    assert session.end_reason == "resident" and session.energy_wh > 0
    adds_up(session)
    assert session.charged_fen == 60  # 50 start fee + 10 started minutes at 1 fen
    assert session.bill is not None
    assert "not_charged" not in [line.code for line in session.bill.lines]


def test_closing_bill_without_a_reason_is_the_bill() -> None:
    usage = Usage(T0)
    usage.add(T0 + 90_000, 100.0, 0)
    bill = closing_bill(START_FEE, usage, T0 + 90_000)
    assert bill.total_fen == 52 and sum(line.amount_fen for line in bill.lines) == 52
    waived = closing_bill(START_FEE, usage, T0 + 90_000, not_charged="nothing_drawn")
    assert waived.total_fen == 0 and waived.lines[:-1] == bill.lines
    assert sum(line.amount_fen for line in waived.lines) == 0
