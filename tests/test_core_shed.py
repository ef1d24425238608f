"""The shed core, driven directly: no broker, no database, simulated time."""

from __future__ import annotations

from dataclasses import replace

from controller.core.config import RuleConfig
from controller.core.fsm import TRANSITIONS, SocketState, Trigger, next_state
from controller.core.metering import U32, register_delta
from controller.core.model import Alarm, AlarmChanged, Authorization, Card, Refusal, SendCommand
from firmware_bridge.messages import BayOccupancy, BoardStatus, EnvReading, PortEvent, Telemetry
from tests.core_helpers import ORDER, T0, make_rig

S = SocketState


def test_transition_table_refuses_moves_it_does_not_list() -> None:
    assert next_state(S.IDLE, Trigger.AUTHORIZE) is S.AUTHORIZED
    assert next_state(S.CHARGING, Trigger.STOP) is S.FINISHING
    assert next_state(S.DISABLED, Trigger.AUTHORIZE) is None
    assert next_state(S.FAULT, Trigger.AUTHORIZE) is None
    assert next_state(S.OFFLINE, Trigger.AUTHORIZE) is None
    # every session state can be stopped and tripped
    for state in (S.AUTHORIZED, S.CHARGING, S.FLOATING):
        assert (state, Trigger.STOP) in TRANSITIONS
        assert (state, Trigger.TRIP) in TRANSITIONS


def test_board_online_makes_ports_idle() -> None:
    rig = make_rig()
    assert {p.state for p in rig.core.ports.values()} == {S.IDLE}
    assert rig.core.free_sockets() == 4


def test_full_charge_floats_then_stops_and_bills_from_the_register() -> None:
    rig = make_rig()
    session = rig.authorize(1, ORDER)
    assert rig.commands(1) == ["on"]
    on = next(a.cmd for a in rig.actions if isinstance(a, SendCommand))
    assert (on.lease_s, on.max_w) == (300, 1100)
    rig.run(3 * 3600, {1: 250.0, 2: 0, 3: 0, 4: 0})  # bulk charge
    assert rig.core.ports[1].state is S.CHARGING
    rig.run(5 * 60 + 10, {1: 12.0, 2: 0, 3: 0, 4: 0})  # below 30 W for 5 minutes
    assert rig.core.ports[1].state is S.FLOATING
    rig.run(45 * 60, {1: 12.0, 2: 0, 3: 0, 4: 0})
    assert session.end_reason == "full"
    assert session.ended_ms is not None and not session.open
    assert rig.core.ports[1].state is S.IDLE
    assert session.first_wh is not None and session.last_wh is not None
    assert session.energy_wh == register_delta(session.first_wh, session.last_wh)
    assert 740 <= session.energy_wh <= 770
    # renewals kept the lease alive: one every 60 s
    assert rig.commands(1).count("renew") >= 3 * 60
    # 1 yuan per 4 h, by the started minute: ~3 h 50 min -> 96 fen
    minutes = -((session.started_ms - session.stop_ms) // 60_000)
    assert session.charged_fen == round(minutes * 25 / 60)
    assert session.refund_fen == 500 - session.charged_fen
    assert "energy_mismatch" not in session.flags


def test_unplugged_ends_after_window_and_grace() -> None:
    rig = make_rig()
    session = rig.authorize(2, ORDER)
    rig.run(1800, {1: 0, 2: 200.0, 3: 0, 4: 0})
    rig.run(4 * 60, {1: 0, 2: 0.0, 3: 0, 4: 0})
    assert session.open  # the 5-minute window is not full yet
    rig.run(10 * 60, {1: 0, 2: 0.0, 3: 0, 4: 0})
    assert session.open  # grace running
    rig.run(3 * 60, {1: 0, 2: 0.0, 3: 0, 4: 0})
    assert session.end_reason == "unplugged"


def test_returning_load_cancels_the_unplug_grace() -> None:
    rig = make_rig()
    session = rig.authorize(2, ORDER)
    rig.run(600, {1: 0, 2: 200.0, 3: 0, 4: 0})
    rig.run(8 * 60, {1: 0, 2: 0.0, 3: 0, 4: 0})
    rig.run(30 * 60, {1: 0, 2: 180.0, 3: 0, 4: 0})
    assert session.open and rig.core.ports[2].state is S.CHARGING


def test_no_load_ends_free_of_charge() -> None:
    rig = make_rig()
    session = rig.authorize(3, ORDER)
    rig.run(310, 0.0)
    assert session.end_reason == "no_load"
    assert (session.charged_fen, session.refund_fen) == (0, 500)


def test_one_spike_is_noise_but_sustained_overpower_trips() -> None:
    rig = make_rig()
    session = rig.authorize(1, ORDER)
    rig.run(60, {1: 300.0, 2: 0, 3: 0, 4: 0})
    rig.now += 10_000
    rig.tel(1, 1500.0)  # a single spike
    rig.now += 10_000
    rig.tel(1, 300.0)
    assert session.open and rig.alarms() == []
    rig.now += 10_000
    rig.tel(1, 1500.0)
    rig.now += 10_000
    rig.tel(1, 1520.0)
    assert session.end_reason == "overpower"
    assert rig.alarms() == ["overpower"]
    assert rig.core.ports[1].state is S.FAULT
    assert rig.commands(1)[-1] == "off"
    # a faulted socket cannot be paid for until staff clear it
    refusal = rig.core.can_start(1)
    assert isinstance(refusal, Refusal) and refusal.code == "fault"


def test_overtemperature_needs_two_readings() -> None:
    rig = make_rig()
    session = rig.authorize(1, ORDER)
    rig.run(60, {1: 300.0, 2: 0, 3: 0, 4: 0})
    rig.now += 10_000
    rig.tel(1, 300.0, temp_c=70.0)
    assert session.open
    rig.now += 10_000
    rig.tel(1, 300.0, temp_c=31.0)
    rig.now += 10_000
    rig.tel(1, 300.0, temp_c=70.0)
    rig.now += 10_000
    rig.tel(1, 300.0, temp_c=71.0)
    assert session.end_reason == "overtemp"
    assert "overtemp" in rig.alarms()


def test_power_with_relay_off_is_a_relay_fault() -> None:
    rig = make_rig()
    for _ in range(3):
        rig.now += 5_000
        rig.tel(4, 150.0, relay=False)
    assert rig.alarms() == ["relay_fault"]
    assert rig.core.ports[4].state is S.FAULT


def test_board_overcurrent_event_trips_the_socket() -> None:
    rig = make_rig()
    session = rig.authorize(1, ORDER)
    rig.run(60, {1: 300.0, 2: 0, 3: 0, 4: 0})
    rig.feed(PortEvent(1, rig.now, "overcurrent"))
    assert session.end_reason == "overpower"


def test_smoke_cuts_every_socket_and_locks_the_shed_until_acknowledged() -> None:
    rig = make_rig()
    s1 = rig.authorize(1, ORDER)
    s2 = rig.authorize(2, replace(ORDER, ref="order-2"))
    rig.run(120, {1: 300.0, 2: 250.0, 3: 0, 4: 0})
    rig.feed(EnvReading("smoke-1", rig.now, "smoke", 1.0, True))
    assert (s1.end_reason, s2.end_reason) == ("smoke", "smoke")
    assert rig.commands(1)[-1] == "off" and rig.commands(2)[-1] == "off"
    assert isinstance(rig.core.can_start(3), Refusal)
    rig.feed(EnvReading("smoke-1", rig.now, "smoke", 0.0, False))
    refusal = rig.core.can_start(3)
    assert isinstance(refusal, Refusal) and refusal.code == "safety_lockout"  # not yet acked
    alarm = next(a for a in rig.core.alarms.values() if a.kind == "smoke")
    rig.core.acknowledge(alarm.id, "staff-wang", "false alarm: dust", rig.now)
    assert rig.core.can_start(3) is None


def test_budget_refuses_new_sessions_and_stops_the_newest_first() -> None:
    rules = RuleConfig(budget_w=1000)
    rig = make_rig(rules=rules)
    old = rig.authorize(1, ORDER)
    rig.run(60, {1: 400.0, 2: 0, 3: 0, 4: 0})
    new = rig.authorize(2, replace(ORDER, ref="order-2"))
    rig.run(60, {1: 400.0, 2: 550.0, 3: 0, 4: 0})
    refusal = rig.core.can_start(3)
    assert isinstance(refusal, Refusal) and refusal.code == "over_budget"
    rig.run(60, {1: 500.0, 2: 600.0, 3: 0, 4: 0})  # 1100 W > 1000 W budget
    assert new.end_reason == "over_budget"
    assert old.open


def test_bay_occupied_without_charging_raises_an_alert() -> None:
    rules = RuleConfig(bay_idle_alert_s=1800)
    rig = make_rig(rules=rules, bays={1: 1, 2: None})
    rig.feed(BayOccupancy(1, rig.now, True, 3.6))
    rig.run(1700, 0.0)
    assert "bay_idle" not in rig.alarms()
    rig.run(200, 0.0)
    assert rig.alarms().count("bay_idle") == 1
    assert rig.core.free_bays() == 1
    rig.feed(BayOccupancy(1, rig.now, False, 3.6))
    assert rig.core.free_bays() == 2


def test_money_used_up_stops_a_fixed_amount_session() -> None:
    rig = make_rig()
    session = rig.authorize(1, Authorization("order", "o-25", 25, "amount"))
    rig.run(2 * 3600, {1: 200.0, 2: 0, 3: 0, 4: 0})
    assert session.end_reason == "money_used_up"
    assert session.charged_fen == 25 and session.refund_fen == 0
    # stops once the bill would pass the prepaid amount: the full hour was paid for
    assert 60 * 60_000 <= session.stop_ms - session.started_ms <= 62 * 60_000


def test_session_cap_stops_a_charger_that_never_tapers() -> None:
    rig = make_rig()
    session = rig.authorize(1, Authorization("order", "o-big", 10_000, "until_full"))
    rig.run(13 * 3600, {1: 300.0, 2: 0, 3: 0, 4: 0}, step=30)
    assert session.end_reason == "session_cap"
    assert 12 * 3600_000 <= session.stop_ms - session.started_ms < 12 * 3600_000 + 60_000


def test_card_tap_starts_and_second_tap_stops_and_debits() -> None:
    rig = make_rig()
    rig.core.set_cards([Card("04A1B2C3", balance_fen=300)])
    rig.feed(PortEvent(2, rig.now, "card", card_uid="04A1B2C3"))
    session = rig.core.ports[2].session
    assert session is not None and session.auth.kind == "card"
    rig.run(3600, {1: 0, 2: 200.0, 3: 0, 4: 0})
    rig.feed(PortEvent(2, rig.now, "card", card_uid="04A1B2C3"))
    assert session.end_reason == "card_stop"
    assert session.charged_fen == 25
    assert rig.core.cards["04A1B2C3"].balance_fen == 275


def test_unknown_or_empty_card_is_refused_without_switching() -> None:
    rig = make_rig()
    rig.core.set_cards([Card("0000AAAA", balance_fen=0)])
    rig.feed(PortEvent(2, rig.now, "card", card_uid="DEADBEEF"))
    rig.feed(PortEvent(2, rig.now, "card", card_uid="0000AAAA"))
    assert rig.commands() == []
    assert rig.core.ports[2].session is None


def test_a_busy_socket_refuses_a_second_session() -> None:
    rig = make_rig()
    rig.authorize(1, ORDER)
    result, actions = rig.core.authorize(1, replace(ORDER, ref="order-2"), rig.now)
    assert isinstance(result, Refusal) and result.code == "authorized"
    assert actions == []


def test_board_last_will_closes_sessions_after_the_settle_wait() -> None:
    rig = make_rig()
    session = rig.authorize(1, ORDER)
    rig.run(600, {1: 200.0, 2: 0, 3: 0, 4: 0})
    energy = session.energy_wh
    rig.feed(BoardStatus("b1", False))
    assert rig.core.ports[1].state is S.OFFLINE
    assert "board_offline" in rig.alarms()
    settle_s = rig.core.rules.offline_settle_s
    for _ in range(settle_s // 10 - 1):  # no samples while offline: it waits for them
        rig.now += 10_000
        rig.tick()
    assert session.open
    for _ in range(rig.core.rules.heartbeat_s // 10 + 2):
        rig.now += 10_000
        rig.tick()
    assert session.end_reason == "board_offline"
    assert not session.open and session.energy_wh == energy
    assert session.refund_fen == 500 - session.charged_fen


def test_a_board_back_within_the_settle_wait_settles_from_its_register() -> None:
    rig = make_rig()
    session = rig.authorize(1, ORDER)
    rig.run(600, {1: 200.0, 2: 0, 3: 0, 4: 0})
    rig.feed(BoardStatus("b1", False))
    for _ in range(60):  # ten minutes away: the lease has cut the relay
        rig.now += 10_000
        rig.tick()
    assert session.open
    first, seen = session.first_wh, rig.core.ports[1].meter.last_wh
    assert first is not None and seen is not None
    rig.feed(Telemetry(1, rig.now, 10_000, 230.0, 0.0, 0.0, seen + 7, False, 30.0))
    assert not session.open and session.end_reason == "interrupted"
    assert session.energy_wh == seen + 7 - first  # what the lease let flow, from the register


def test_no_board_is_silent_while_the_controllers_own_link_is_down() -> None:
    rig = make_rig()
    assert rig.core.board_online["b1"]
    for _ in range(30):  # 15 minutes without a word: the broker is away, not the board
        rig.now += 30_000
        rig._record(rig.core.tick(rig.now, link_up=False))
    assert rig.core.board_online["b1"] and "board_offline" not in rig.alarms()
    assert "broker_unreachable" in rig.alarms()  # staff are told what is really wrong
    rig.now += 3 * 90_000 - 1_000  # back: the board gets its offline rule anew
    rig.tick()
    assert rig.core.board_online["b1"]
    rig.now += 2_000
    rig.tick()
    assert not rig.core.board_online["b1"]


def test_silent_board_goes_offline_after_three_heartbeats() -> None:
    rig = make_rig()
    rig.now += 3 * 90_000 + 1_000
    rig.tick()
    assert {p.state for p in rig.core.ports.values()} == {S.OFFLINE}


def test_restart_resumes_a_running_session_and_bills_the_gap() -> None:
    rig = make_rig()
    session = rig.authorize(1, ORDER)
    rig.run(600, {1: 240.0, 2: 0, 3: 0, 4: 0})
    before = session.energy_wh
    # a new core after a crash, given the stored session
    fresh = make_rig()
    fresh.wh, fresh.seq, fresh.relay = rig.wh, rig.seq, {1: True}
    fresh.now = rig.now
    fresh.core.ports[1].state = S.OFFLINE
    fresh.core.restore([session], [])
    fresh.run(120, {1: 240.0, 2: 0, 3: 0, 4: 0})
    assert fresh.core.ports[1].state is S.CHARGING
    assert session.energy_wh == register_delta(session.first_wh or 0, session.last_wh or 0)
    assert session.energy_wh > before
    assert fresh.commands(1)[0] == "renew"


def test_restart_closes_a_session_whose_relay_the_lease_cut() -> None:
    rig = make_rig()
    session = rig.authorize(1, ORDER)
    rig.run(600, {1: 240.0, 2: 0, 3: 0, 4: 0})
    fresh = make_rig()
    fresh.wh, fresh.seq = rig.wh, rig.seq
    fresh.now = rig.now + 600_000
    fresh.core.ports[1].state = S.OFFLINE
    fresh.core.restore([session], [Alarm("a1", "overtemp", T0, "old", port=3)])
    fresh.tel(1, 0.0, relay=False)
    assert session.end_reason == "interrupted" and not session.open
    assert fresh.core.ports[1].state is S.IDLE
    assert "a1" in fresh.core.alarms


def test_disable_stops_the_session_then_takes_the_socket_out() -> None:
    rig = make_rig()
    session = rig.authorize(1, ORDER)
    rig.run(60, {1: 200.0, 2: 0, 3: 0, 4: 0})
    refusal, actions = rig.core.disable(1, "loose socket", rig.now)
    rig._record(actions)
    assert refusal is None
    assert session.end_reason == "disabled"
    assert rig.core.ports[1].state is S.DISABLED
    assert isinstance(rig.core.can_start(1), Refusal)
    rig.core.enable(1, rig.now)
    assert rig.core.ports[1].state is S.IDLE


def test_a_stop_for_one_session_does_not_end_the_next_one() -> None:
    """A stop asked for one session and delivered late (the shed was offline)
    finds another resident's session on the socket: refused, nothing moves."""
    rig = make_rig()
    session = rig.authorize(1, ORDER)
    rig.run(60, {1: 200.0, 2: 0, 3: 0, 4: 0})
    for kw in ({"session_id": "s-other"}, {"auth_ref": "order-9"}):
        refusal, actions = rig.core.stop(1, "staff", rig.now, **kw)
        assert refusal is not None and refusal.code == "session_changed"
        assert actions == []
        assert session.stop_ms is None and rig.core.ports[1].state is S.CHARGING
    refusal, actions = rig.core.stop(1, "resident", rig.now, auth_ref="order-1")
    rig._record(actions)
    assert refusal is None and session.end_reason == "resident"
    assert any(isinstance(a, SendCommand) and a.cmd.op == "off" for a in actions)


def test_register_wrap_is_metered_across_zero() -> None:
    rig = make_rig()
    rig.wh[1] = U32 - 50.0
    rig.now += 1000
    rig.tel(1, 0.0)
    session = rig.authorize(1, ORDER)
    rig.run(1800, {1: 300.0, 2: 0, 3: 0, 4: 0})
    assert session.last_wh is not None and session.last_wh < 1000  # wrapped
    assert session.energy_wh == register_delta(session.first_wh or 0, session.last_wh)
    assert 145 <= session.energy_wh <= 151


def test_out_of_order_and_future_samples_are_discarded_not_billed() -> None:
    rig = make_rig()
    session = rig.authorize(1, ORDER)
    rig.run(120, {1: 300.0, 2: 0, 3: 0, 4: 0})
    energy = session.energy_wh
    rig.wh[1] += 500
    rig.tel(1, 300.0, ts=rig.now - 60_000)  # older than the newest
    rig.tel(1, 300.0, ts=rig.now + 400_000)  # from the future
    assert session.energy_wh == energy
    assert rig.core.counters.discarded == {"out_of_order": 1, "future_ts": 1}


def test_meter_jump_is_never_billed() -> None:
    rig = make_rig()
    session = rig.authorize(1, ORDER)
    rig.run(120, {1: 300.0, 2: 0, 3: 0, 4: 0})
    energy = session.energy_wh
    rig.wh[1] += 100_000  # 100 kWh in 10 s is impossible
    rig.now += 10_000
    rig.tel(1, 300.0)
    assert session.energy_wh == energy
    assert "meter_jump" in session.flags


def test_board_reboot_seq_reset_keeps_metering() -> None:
    rig = make_rig()
    session = rig.authorize(1, ORDER)
    rig.run(120, {1: 300.0, 2: 0, 3: 0, 4: 0})
    rig.seq[1] = -1  # seq starts again at 0
    rig.run(60, {1: 300.0, 2: 0, 3: 0, 4: 0})
    assert "board_rebooted" in session.flags
    assert session.energy_wh == register_delta(session.first_wh or 0, session.last_wh or 0)


def test_failed_start_refunds_everything() -> None:
    rig = make_rig()
    rig.auto_ack = False
    session = rig.authorize(1, ORDER)
    on = next(a.cmd for a in rig.actions if isinstance(a, SendCommand))
    from firmware_bridge.messages import CmdAck

    rig.auto_ack = True
    rig.feed(CmdAck(1, on.id, False, False, "timeout"))
    assert session.end_reason == "start_failed"
    assert (session.charged_fen, session.refund_fen) == (0, 500)


def test_lithium_float_too_low_to_tell_from_unplugged_still_ends_as_full() -> None:
    rig = make_rig()
    session = rig.authorize(1, ORDER)
    rig.run(3600, {1: 200.0, 2: 0, 3: 0, 4: 0})
    rig.run(600, {1: 12.0, 2: 0, 3: 0, 4: 0})  # tapering through the float band
    assert rig.core.ports[1].state is S.FLOATING
    rig.run(30 * 60, {1: 2.0, 2: 0, 3: 0, 4: 0})  # the BMS all but cuts off
    assert session.end_reason == "full"


def test_power_dropping_straight_to_zero_is_not_full() -> None:
    rig = make_rig()
    session = rig.authorize(1, ORDER)
    rig.run(3600, {1: 200.0, 2: 0, 3: 0, 4: 0})
    rig.run(10 * 60, {1: 0.0, 2: 0, 3: 0, 4: 0})
    assert rig.core.ports[1].state is S.CHARGING  # never "full"
    rig.run(10 * 60, {1: 0.0, 2: 0, 3: 0, 4: 0})
    assert session.end_reason == "unplugged"


def test_short_uid_from_an_rs485_reader_finds_its_card_if_unique() -> None:
    rig = make_rig()
    rig.core.set_cards([Card("04A1B2C3", 300), Card("0000B2C4", 300), Card("1111B2C4", 300)])
    rig.feed(PortEvent(1, rig.now, "card", card_uid="B2C3"))
    session = rig.core.ports[1].session
    assert session is not None and session.auth.ref == "04A1B2C3"
    rig.feed(PortEvent(2, rig.now, "card", card_uid="B2C4"))  # two cards end like this
    assert rig.core.ports[2].session is None
    rig.feed(PortEvent(1, rig.now, "card", card_uid="B2C3"))  # the same card stops it
    assert session.end_reason == "card_stop"


def test_unplug_window_uses_constant_memory_and_averages_by_time() -> None:
    from controller.core.chargeend import WindowAverage

    avg = WindowAverage(300_000)
    for i in range(60_000):  # a board flooding 10 samples a second for 100 minutes
        avg.add(T0 + i * 100, 2.0 if (i // 50) % 2 else 4.0)
    assert len(avg._buckets) <= 11
    result = avg.average()
    assert result is not None and abs(result - 3.0) < 0.05
    short = WindowAverage(300_000)
    short.add(T0, 100.0)
    short.add(T0 + 60_000, 0.0)
    assert short.average() is None  # one minute of data says nothing about five


def test_a_board_that_goes_offline_is_named_without_the_links_wording() -> None:
    rig = make_rig()
    rig.feed(BoardStatus("b1", False))  # an MQTT last will, or an RS-485 board gone quiet
    offline = [a.alarm for a in rig.actions if isinstance(a, AlarmChanged) and a.alarm.active]
    assert [a.kind for a in offline] == ["board_offline"]
    assert offline[0].detail == "board b1: board went offline"
