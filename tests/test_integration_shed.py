"""The controller and the simulated boards over the real broker, in simulated time."""

from __future__ import annotations

import json
import random
from pathlib import Path

import paho.mqtt.client as mqtt

from controller.clock import SimClock
from controller.core.fsm import SocketState
from controller.core.metering import register_delta
from controller.core.model import Authorization, Refusal, Session
from simulators import ebike
from simulators.board import SimBoard
from tests.brokers import mqtt_broker_address
from tests.shed_harness import shed_harness

CARD = "04A1B2C3"


def bike(kind: str = "lithium", soc: float = 0.85) -> ebike.EBike:
    rng = random.Random(3)
    if kind == "lead_acid":
        return ebike.lead_acid(rng, soc=soc)
    if kind == "overdraw":
        return ebike.overdraw_charger(rng)
    return ebike.lithium(rng, soc=soc)


async def test_card_tap_charges_until_full_and_bills_the_register(tmp_path: Path) -> None:
    async with shed_harness(tmp_path) as h:
        t = h.clock.now_ms()
        before = h.board.true_wh(2)
        await h.publish(h.board.plug(2, bike("lead_acid", 0.9), t))
        await h.publish(h.board.tap_card(2, CARD, t))
        session = h.session(2)
        assert session is not None and session.auth.kind == "card"
        await h.run(60)
        assert h.service.core.ports[2].state is SocketState.CHARGING
        assert h.board.relay(2)
        await h.run_until(lambda: not session.open, 10 * 3600)
        assert session.end_reason == "full"
        assert not h.board.relay(2)
        truth = h.board.true_wh(2) - before
        assert session.first_wh is not None and session.last_wh is not None
        assert session.energy_wh == register_delta(session.first_wh, session.last_wh)
        assert abs(session.energy_wh - truth) < 1.0
        assert h.service.core.cards[CARD].balance_fen == 1000 - session.charged_fen
        assert session.charged_fen > 0


async def test_unplugged_bike_ends_the_session(tmp_path: Path) -> None:
    async with shed_harness(tmp_path) as h:
        t = h.clock.now_ms()
        await h.publish(h.board.plug(1, bike("lead_acid", 0.2), t))
        result = h.service.start_session(1, Authorization("order", "o-unplug", 500))
        assert isinstance(result, Session)
        await h.run(1800)
        await h.publish(h.board.unplug(1, h.clock.now_ms()))
        await h.run_until(lambda: not result.open, 3600)
        assert result.end_reason == "unplugged"
        assert result.charged_fen + result.refund_fen == 500


async def test_overdrawing_charger_is_tripped_and_alarmed(tmp_path: Path) -> None:
    async with shed_harness(tmp_path) as h:
        await h.publish(h.board.plug(3, bike("overdraw"), h.clock.now_ms()))
        result = h.service.start_session(3, Authorization("order", "o-over", 500))
        assert isinstance(result, Session)
        await h.run(120)
        assert result.end_reason == "overpower"
        assert not h.board.relay(3)
        assert h.service.core.ports[3].state is SocketState.FAULT
        assert "overpower" in {a.kind for a in h.service.core.alarms.values()}


async def test_smoke_switches_every_relay_off(tmp_path: Path) -> None:
    async with shed_harness(tmp_path) as h:
        t = h.clock.now_ms()
        for port in (1, 2, 4):
            await h.publish(h.board.plug(port, bike("lead_acid", 0.3), t))
            h.service.start_session(port, Authorization("order", f"o-smoke-{port}", 500))
        await h.run(60)
        assert all(h.board.relay(p) for p in (1, 2, 4))
        await h.publish(h.smoke.set_smoke(True, h.clock.now_ms()), h.smoke)
        assert not any(h.board.relay(p) for p in (1, 2, 3, 4))
        assert {s.end_reason for s in h.closed()} == {"smoke"}
        refusal = h.service.start_session(3, Authorization("order", "o-after", 500))
        assert isinstance(refusal, Refusal) and refusal.code == "safety_lockout"


async def test_budget_refuses_a_new_session(tmp_path: Path) -> None:
    async with shed_harness(tmp_path, rules={"budget_w": 200}) as h:
        await h.publish(h.board.plug(1, bike("lead_acid", 0.1), h.clock.now_ms()))
        h.service.start_session(1, Authorization("order", "o-b1", 500))
        await h.run(60)
        assert h.service.core.shed_power_w() > 180  # above 90 % of the budget
        refusal = h.service.start_session(2, Authorization("order", "o-b2", 500))
        assert isinstance(refusal, Refusal) and refusal.code == "over_budget"
        assert not h.board.relay(2)


async def test_restart_in_the_middle_of_a_session(tmp_path: Path) -> None:
    clock = SimClock(1_795_341_000_000)
    host, port = mqtt_broker_address()
    shed = f"t-restart-{random.randrange(1 << 30):x}"
    board = SimBoard(shed, "b1", [1, 2, 3, 4], rng=random.Random(5), start_ms=clock.now_ms(),
                     interval_on_s=10, interval_off_s=60)
    before = board.true_wh(1)
    async with shed_harness(tmp_path, clock=clock, shed=shed, board=board) as h:
        await h.publish(board.plug(1, bike("lead_acid", 0.5), clock.now_ms()))
        first = h.service.start_session(1, Authorization("order", "o-restart", 800))
        assert isinstance(first, Session)
        await h.run(600)
        energy_before = first.energy_wh
    # The controller is gone for 2 minutes; the board keeps charging on its lease.
    for _ in range(12):
        clock.advance(10)
        board.tick(clock.now_ms())
    assert board.relay(1)
    async with shed_harness(tmp_path, clock=clock, shed=shed, board=board) as h:
        resumed = h.session(1)
        assert resumed is not None and resumed.id == first.id
        assert h.service.core.ports[1].state is SocketState.CHARGING
        assert resumed.energy_wh > energy_before
        h.service.stop_session(1)
        await h.run(20)
        assert not resumed.open
        rows = h.service.store.all_sessions()
        assert [r.id for r in rows] == [first.id]
        assert abs(rows[0].energy_wh - (board.true_wh(1) - before)) < 1.0
        assert rows[0].billed_fen + rows[0].refund_fen == 800
    del port, host


BAD_PAYLOADS = [
    ("port/1/telemetry", b"not json", "not_json"),
    ("port/1/telemetry", b'{"ts": 1, "seq": 1, "v": 230, "a": 1, "w": 200, "relay": true}',
     "missing_field"),
    ("port/1/telemetry", b'{"ts": 1, "seq": 1, "v": 230, "a": 1, "w": 200, "wh": "5",'
     b' "relay": true}', "wrong_type"),
    ("port/1/telemetry", b'{"ts": 1, "seq": 1, "v": 230, "a": 1, "w": 9000, "wh": 5,'
     b' "relay": true}', "out_of_range"),
    ("port/77/telemetry", b'{"ts": 1, "seq": 1, "v": 230, "a": 1, "w": 200, "wh": 5,'
     b' "relay": true}', "unknown_port"),
    ("port/1/event", b'{"ts": 1, "type": "self_destruct"}', "unknown_event_type"),
]


async def test_bad_payloads_are_dropped_counted_and_change_nothing(tmp_path: Path) -> None:
    async with shed_harness(tmp_path) as h:
        await h.publish(h.board.plug(1, bike("lead_acid", 0.2), h.clock.now_ms()))
        session = h.service.start_session(1, Authorization("order", "o-bad", 500))
        assert isinstance(session, Session)
        await h.run(120)
        host, port = mqtt_broker_address()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.connect(host, port)
        client.loop_start()
        try:
            energy, relays = session.energy_wh, [h.board.relay(p) for p in (1, 2, 3, 4)]
            now = h.clock.now_ms()
            future = json.dumps({"ts": now + 600_000, "seq": 99, "v": 230, "a": 1, "w": 200,
                                 "wh": 4_000_000_000, "relay": False}).encode()
            rows = [*BAD_PAYLOADS, ("port/1/telemetry", future, "future_ts")]
            before = h.counters()
            for topic, payload, _ in rows:
                client.publish(f"ebs/v1/{h.shed}/{topic}", payload, qos=1).wait_for_publish(5)
            for _ in range(200):  # wait until the controller has read them all
                await h.run(10)
                if h.counters()["received"] >= before["received"] + len(rows):
                    break
            after = h.counters()
        finally:
            client.loop_stop()
            client.disconnect()
        for _, _, reason in rows:
            assert after.get(f"dropped.{reason}", 0) > before.get(f"dropped.{reason}", 0), reason
        assert [h.board.relay(p) for p in (1, 2, 3, 4)] == relays
        assert session.open and session.energy_wh >= energy
        assert session.energy_wh - energy < 10  # 10 s at ~250 W, not the forged register
        assert h.service.core.counters.discarded == {}
