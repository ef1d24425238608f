"""The shed as an OCPP 1.6J charge point, against a central system built on the
same library's server side, over a real websocket on loopback, in simulated time."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from controller.clock import SimClock
from controller.core.config import ConfigError
from controller.core.model import Session
from controller.ocpp.mapping import iso
from controller.runtime import running_controller
from controller.settings import OcppSettings, load_settings
from tests.brokers import mqtt_broker_address
from tests.ocpp_central import (
    CARD,
    PASSWORD,
    PORTS,
    T0,
    CentralSystem,
    OcppShed,
    call,
    shed_settings,
)
from tests.shed_harness import harness_settings

OTHER_CARD = "04FFEE01"
TX_ACTIONS = ("StartTransaction", "MeterValues", "StopTransaction")


@pytest.fixture
async def central() -> AsyncIterator[CentralSystem]:
    cs = CentralSystem()
    await cs.start()
    yield cs
    await stopped(cs.stop(), "the central system")


@pytest.fixture
async def shed(tmp_path: Path, central: CentralSystem) -> AsyncIterator[OcppShed]:
    s = OcppShed(tmp_path, central, SimClock(T0))
    s.board.online()
    yield s
    await stopped(s.close(), "the shed")


async def stopped(closing: Coroutine[Any, Any, None], what: str) -> None:
    """A teardown that hangs fails, naming what was still running."""
    task = asyncio.ensure_future(closing)
    done, _ = await asyncio.wait([task], timeout=20)
    if not done:
        running = sorted(t.get_name() for t in asyncio.all_tasks() if not t.done())
        task.cancel()
        raise AssertionError(f"{what} did not stop within 20 s; running: {running}")
    task.result()


async def booted(shed: OcppShed) -> None:
    shed.start()
    await shed.settle(lambda: shed.link.accepted and not shed.link.statuses)


def closed(shed: OcppShed) -> dict[str, Session]:
    return {s.id: s for s in shed.service.closed}


def tx_of(central: CentralSystem, connector: int) -> int:
    """The newest transaction the central system gave to a connector."""
    return max(t for t, start in central.starts.items() if start["connector_id"] == connector)


def check_invariants(central: CentralSystem, sessions: dict[str, Session],
                     running: int = 0) -> None:  # fmt: skip
    """One Stop per Start; meterStop - meterStart is each session's billed energy."""
    assert all(len(stops) == 1 for stops in central.stops.values()), central.stops
    assert set(central.stops) <= set(central.starts)
    assert len(central.starts) - len(central.stops) == running
    by_start = {(s.port, s.first_wh): s for s in sessions.values()}
    for tx, stops in central.stops.items():
        start = central.starts[tx]
        session = by_start[(start["connector_id"], start["meter_start"])]
        assert stops[0]["meter_stop"] - start["meter_start"] == session.energy_wh


def measurands(mv: dict[str, Any]) -> dict[str, str]:
    return {v["measurand"]: v["value"] for v in mv["meter_value"][0]["sampled_value"]}


async def test_boot_waits_for_acceptance_then_a_card_session_runs_to_full(
    shed: OcppShed, central: CentralSystem
) -> None:
    central.boot.extend([("Pending", 30), ("Rejected", 20), ("Accepted", 120)])
    central.clock = shed.clock
    shed.start()
    await shed.settle(lambda: len(central.of("BootNotification")) == 1)
    await shed.run_until(lambda: len(central.of("BootNotification")) == 3, max_s=300, step_s=1)
    t1, t2, t3 = central.times[:3]
    # the intervals Pending and Rejected came with, not the 60 s used without one
    assert 30_000 <= t2 - t1 < 45_000 and 20_000 <= t3 - t2 < 45_000
    await shed.settle(lambda: len(central.of("StatusNotification")) == 5)
    # nothing but BootNotification before the central system accepted it
    assert [a for a, _ in central.messages[:3]] == ["BootNotification"] * 3
    assert central.paths == ["/ocpp/SHED-OCPP-1"] and central.subprotocols == ["ocpp1.6"]
    boot = central.of("BootNotification")[0]
    assert boot["charge_point_vendor"] == "ebshed"
    assert boot["charge_point_serial_number"] == "ocpp-1"
    assert [central.statuses(c) for c in (0, *PORTS)] == [["Available"]] * 5

    await shed.run(600)  # the interval BootNotification returned (120 s), not heartbeat_s
    assert 4 <= len(central.of("Heartbeat")) <= 6

    shed.board.load_w[2] = 600.0
    shed.board.event(2, "card", CARD)
    await shed.settle(lambda: bool(central.starts))
    assert central.of("Authorize") == [{"id_tag": CARD}]
    start = central.starts[100]
    assert start["connector_id"] == 2 and start["id_tag"] == CARD
    assert start["meter_start"] == 20_000  # the socket's register, not 0
    await shed.run(20 * 60)
    mvs = [mv for mv in central.of("MeterValues") if mv.get("transaction_id") == 100]
    assert 18 <= len(mvs) <= 21  # meter_interval_s = 60
    energy = [int(measurands(mv)["Energy.Active.Import.Register"]) for mv in mvs]
    assert energy == sorted(energy) and energy[-1] > 20_000 + 150
    assert measurands(mvs[-1])["Power.Active.Import"] == "600.0"
    assert measurands(mvs[-1])["Temperature"] == "31.5"

    shed.board.load_w[2] = 12.0  # the charger tapers: full, float, then the end
    await shed.run_until(lambda: shed.port_state(2) == "floating", max_s=900)
    await shed.run_until(lambda: bool(central.stops), max_s=3 * 3600)
    await shed.settle(lambda: central.statuses(2)[-1] == "Available")
    assert central.statuses(2) == ["Available", "Preparing", "Charging", "SuspendedEV",
                                   "Finishing", "Available"]  # fmt: skip
    (stop,) = central.stops[100]
    session = next(iter(closed(shed).values()))
    assert session.end_reason == "full" and stop["reason"] == "Local"
    assert stop["meter_stop"] - start["meter_start"] == session.energy_wh
    begin, end = stop["transaction_data"]
    assert begin["sampled_value"][0]["context"] == "Transaction.Begin"
    assert end["sampled_value"][0]["value"] == str(stop["meter_stop"])
    check_invariants(central, closed(shed))


async def test_every_remote_command_is_answered_and_carried_out(
    shed: OcppShed, central: CentralSystem
) -> None:
    await booted(shed)
    ok = await central.send(call.RemoteStartTransaction(id_tag="APP-USER-7", connector_id=3))
    assert ok.status == "Accepted"
    await shed.settle(lambda: bool(central.starts))
    assert central.starts[100]["connector_id"] == 3
    assert central.starts[100]["id_tag"] == "APP-USER-7"
    shed.board.load_w[3] = 400.0
    busy = await central.send(call.RemoteStartTransaction(id_tag="APP-USER-8", connector_id=3))
    assert busy.status == "Rejected"
    anywhere = await central.send(call.RemoteStartTransaction(id_tag="APP-USER-8"))
    assert anywhere.status == "Accepted" and shed.port_state(1) == "authorized"
    shed.board.load_w[1] = 300.0
    await shed.run(300)

    unknown = await central.send(call.RemoteStopTransaction(transaction_id=999))
    assert unknown.status == "Rejected"
    stopped = await central.send(call.RemoteStopTransaction(transaction_id=tx_of(central, 3)))
    assert stopped.status == "Accepted"
    await shed.run(20)
    await shed.settle(lambda: tx_of(central, 3) in central.stops)
    assert central.stops[tx_of(central, 3)][0]["reason"] == "Remote"

    # availability: idle socket at once, busy socket after its session, 0 = every socket
    idle = await central.send(call.ChangeAvailability(connector_id=2, type="Inoperative"))
    assert idle.status == "Accepted" and shed.port_state(2) == "disabled"
    busy_socket = await central.send(call.ChangeAvailability(connector_id=1, type="Inoperative"))
    assert busy_socket.status == "Scheduled"
    await shed.run(20)
    await shed.settle(lambda: tx_of(central, 1) in central.stops)
    assert shed.port_state(1) == "disabled"
    assert central.stops[tx_of(central, 1)][0]["reason"] == "Local"
    await shed.settle(lambda: central.statuses(1)[-1] == "Unavailable")
    assert central.statuses(2)[-1] == "Unavailable"
    back = await central.send(call.ChangeAvailability(connector_id=0, type="Operative"))
    assert back.status == "Accepted"
    await shed.settle(lambda: central.statuses(1)[-1] == central.statuses(2)[-1] == "Available")
    nowhere = await central.send(call.ChangeAvailability(connector_id=9, type="Inoperative"))
    assert nowhere.status == "Rejected"

    # configuration
    every = await central.send(call.GetConfiguration())
    keys = {k["key"]: k for k in every.configuration_key}
    assert keys["NumberOfConnectors"] == {"key": "NumberOfConnectors", "readonly": True,
                                          "value": "4"}  # fmt: skip
    assert keys["HeartbeatInterval"]["readonly"] is False
    some = await central.send(call.GetConfiguration(key=["MeterValueSampleInterval", "Nope"]))
    assert [k["value"] for k in some.configuration_key] == ["60"]
    assert some.unknown_key == ["Nope"]
    answers = {}
    for key, value in [("HeartbeatInterval", "60"), ("NumberOfConnectors", "9"),
                       ("Nope", "1"), ("MeterValueSampleInterval", "often"),
                       ("TransactionMessageRetryInterval", "5")]:  # fmt: skip
        res = await central.send(call.ChangeConfiguration(key=key, value=value))
        answers[key] = res.status
    assert answers == {"HeartbeatInterval": "Accepted", "NumberOfConnectors": "Rejected",
                       "Nope": "NotSupported", "MeterValueSampleInterval": "Rejected",
                       "TransactionMessageRetryInterval": "Accepted"}  # fmt: skip
    assert shed.link.store.config() == {"HeartbeatInterval": "60",
                                        "TransactionMessageRetryInterval": "5"}  # fmt: skip
    await shed.settle(lambda: True)
    beats = len(central.of("Heartbeat"))
    await shed.run(600)
    assert 7 <= len(central.of("Heartbeat")) - beats <= 11  # now every 60 s (300 s before)

    # triggers
    beats = len(central.of("Heartbeat"))
    trig = await central.send(call.TriggerMessage(requested_message="Heartbeat"))
    assert trig.status == "Accepted"
    await shed.settle(lambda: len(central.of("Heartbeat")) == beats + 1)
    n4 = len(central.statuses(4))
    trig = await central.send(call.TriggerMessage(requested_message="StatusNotification",
                                                  connector_id=4))  # fmt: skip
    assert trig.status == "Accepted"
    await shed.settle(lambda: len(central.statuses(4)) == n4 + 1)
    trig = await central.send(call.TriggerMessage(requested_message="MeterValues", connector_id=4))
    assert trig.status == "Accepted"
    await shed.settle(lambda: any(mv["connector_id"] == 4 for mv in central.of("MeterValues")))
    (mv4,) = [mv for mv in central.of("MeterValues") if mv["connector_id"] == 4]
    assert mv4["meter_value"][0]["sampled_value"][0] == {
        "value": "40000", "context": "Trigger", "measurand": "Energy.Active.Import.Register",
        "unit": "Wh", "location": "Outlet"}  # fmt: skip
    boots = len(central.of("BootNotification"))
    trig = await central.send(call.TriggerMessage(requested_message="BootNotification"))
    assert trig.status == "Accepted"
    await shed.settle(lambda: len(central.of("BootNotification")) == boots + 1)
    nope = await central.send(
        call.TriggerMessage(requested_message="DiagnosticsStatusNotification"))  # fmt: skip
    assert nope.status == "NotImplemented"
    bad = await central.send(call.TriggerMessage(requested_message="Heartbeat", connector_id=9))
    assert bad.status == "Rejected"

    # data transfer, unlock
    res = await central.send(call.DataTransfer(vendor_id="acme"))
    assert res.status == "UnknownVendorId"
    res = await central.send(call.DataTransfer(vendor_id="ebshed", message_id="live"))
    assert res.status == "Accepted"
    assert [p["port"] for p in json.loads(res.data)["ports"]] == list(PORTS)
    res = await central.send(call.DataTransfer(vendor_id="ebshed", message_id="what"))
    assert res.status == "UnknownMessageId"
    res = await central.send(call.UnlockConnector(connector_id=1))
    assert res.status == "NotSupported"

    # resets: hard is refused; soft stops every transaction and boots again
    res = await central.send(call.Reset(type="Hard"))
    assert res.status == "Rejected"
    shed.board.load_w[4] = 500.0
    shed.board.event(4, "card", CARD)
    await shed.settle(lambda: any(s["connector_id"] == 4 for s in central.starts.values()))
    await shed.run(120)
    boots = len(central.of("BootNotification"))
    res = await central.send(call.Reset(type="Soft"))
    assert res.status == "Accepted"
    await shed.run(20)
    await shed.settle(lambda: tx_of(central, 4) in central.stops)
    assert central.stops[tx_of(central, 4)][0]["reason"] == "SoftReset"
    assert len(central.paths) == 2 and len(central.of("BootNotification")) == boots + 1
    check_invariants(central, closed(shed))


async def test_a_tag_the_central_system_refuses_stops_its_session(
    shed: OcppShed, central: CentralSystem
) -> None:
    central.tags[OTHER_CARD] = "Blocked"
    await booted(shed)
    shed.board.load_w[1] = 500.0
    shed.board.event(1, "card", OTHER_CARD)
    await shed.run(30)
    await shed.settle(lambda: bool(central.stops))
    assert central.of("Authorize") == [{"id_tag": OTHER_CARD}]
    (stop,) = next(iter(central.stops.values()))
    assert stop["reason"] == "DeAuthorized"
    assert next(iter(closed(shed).values())).end_reason == "deauthorized"
    check_invariants(central, closed(shed))


async def test_meter_registers_that_wrap_count_on(tmp_path: Path, central: CentralSystem) -> None:
    shed = OcppShed(tmp_path, central, SimClock(T0), wh={1: (1 << 32) - 100, 2: 0, 3: 0, 4: 0})
    shed.board.online()
    try:
        await booted(shed)
        for port, card in ((1, CARD), (2, OTHER_CARD)):
            shed.board.load_w[port] = 800.0
            shed.board.event(port, "card", card)
        await shed.run(30 * 60)
        shed.board.event(1, "button")
        shed.board.event(2, "button")
        await shed.run(30)
        await shed.settle(lambda: len(central.stops) == 2)
        wrapped, zero = central.starts[tx_of(central, 1)], central.starts[tx_of(central, 2)]
        assert wrapped["meter_start"] == (1 << 32) - 100
        assert central.stops[tx_of(central, 1)][0]["meter_stop"] > 1 << 32
        assert zero["meter_start"] == 0  # the register is 0: so is meterStart
        check_invariants(central, closed(shed))
    finally:
        await shed.close()


async def test_offline_sessions_are_sent_in_order_after_reconnect(
    shed: OcppShed, central: CentralSystem
) -> None:
    await booted(shed)
    shed.board.load_w.update({1: 500.0, 2: 700.0, 3: 400.0})
    shed.board.event(1, "card", CARD)  # A: starts online
    await shed.run(300)
    await shed.settle(lambda: 100 in central.starts)
    await central.stop()
    await shed.run(60)
    assert not shed.link.accepted
    shed.board.event(1, "button")  # A ends offline
    await shed.run(30)
    shed.board.event(2, "card", OTHER_CARD)  # B starts and ends offline
    await shed.run(600)
    shed.board.event(2, "button")
    await shed.run(30)
    shed.board.event(3, "card", CARD)  # C starts offline, runs on
    await shed.run(600)
    queued = shed.link.store.depth()
    assert queued >= 2 + 10 + 2 + 10  # Stop A, Start/Stop B, meter values of A, B, C
    reconnect_at = len(central.messages)
    central.refuse["StartTransaction"] = 1  # B's Start: refused once, then retried
    central.refuse["MeterValues"] = 3  # one meter value given up after 3 attempts
    await central.start()
    await shed.run_until(lambda: shed.link.accepted and shed.link.store.depth() == 0
                         and not shed.link.statuses, max_s=1800)  # fmt: skip
    after = central.messages[reconnect_at:]
    assert after[0][0] == "BootNotification"
    # statuses: each connector once, as it is now; the changes while offline are not replayed
    statuses = [(p["connector_id"], p["status"]) for a, p in after[1:6]]
    assert statuses == [(0, "Available"), (1, "Available"), (2, "Available"),
                        (3, "Charging"), (4, "Available")]  # fmt: skip
    assert [a for a, _ in after].count("StatusNotification") == 5
    sent = [(a, p) for a, p in after if a in TX_ACTIONS]
    stamps = [p["timestamp"] if a != "MeterValues" else p["meter_value"][0]["timestamp"]
              for a, p in sent]  # fmt: skip
    assert stamps == sorted(stamps)  # in the order they happened
    assert [a for a, _ in sent if a != "MeterValues"] == [
        "StopTransaction", "StartTransaction", "StartTransaction", "StopTransaction",
        "StartTransaction"]  # fmt: skip
    assert len(central.refused) == 4 and shed.link.counts["dropped"] == 1
    tx_b, tx_c = tx_of(central, 2), tx_of(central, 3)
    assert central.starts[tx_b]["id_tag"] == OTHER_CARD
    assert central.stops[tx_b][0]["transaction_id"] == tx_b  # bound to the right session
    assert {mv["transaction_id"] for mv in central.of("MeterValues")
            if mv["connector_id"] == 3} == {tx_c}  # fmt: skip
    check_invariants(central, closed(shed), running=1)
    shed.board.event(3, "button")
    await shed.run(30)
    await shed.settle(lambda: tx_c in central.stops)
    check_invariants(central, closed(shed))


async def test_a_restart_mid_transaction_keeps_its_transaction(
    tmp_path: Path, central: CentralSystem
) -> None:
    clock = SimClock(T0)
    first = OcppShed(tmp_path, central, clock)
    first.board.online()
    await booted(first)
    first.board.load_w.update({1: 500.0, 2: 600.0})
    first.board.event(1, "card", CARD)
    await first.run(300)
    await first.settle(lambda: 100 in central.starts)
    await central.stop()
    await first.run(120)  # meter values of A queued on disk
    first.board.event(2, "card", OTHER_CARD)  # B starts offline: its Start only on disk
    await first.run(120)
    started_b = first.service.core.ports[2].session
    assert started_b is not None
    await first.close()  # the controller stops; the boards keep the relays on (lease)

    second = OcppShed(tmp_path, central, clock, wh={p: int(first.board.wh[p]) for p in PORTS})
    second.board.relay, second.board.load_w = first.board.relay, first.board.load_w
    try:
        second.board.online()  # the restored sessions meet their sockets again
        assert second.port_state(1) == second.port_state(2) == "charging"
        await central.start()
        second.start()
        await second.run_until(lambda: second.link.accepted and second.link.store.depth() == 0)
        assert len(central.starts) == 2  # A was not started again
        start_b = central.starts[tx_of(central, 2)]
        assert start_b["timestamp"] == iso(started_b.started_ms)  # when B started, offline
        assert start_b["meter_start"] == started_b.first_wh
        await second.run(600)
        second.board.event(1, "button")
        second.board.event(2, "button")
        await second.run(30)
        await second.settle(lambda: len(central.stops) == 2)
        assert central.stops[100][0]["reason"] == "Local"
        check_invariants(central, closed(second))
    finally:
        await second.close()


async def test_sessions_the_link_missed_are_made_good_at_start(
    tmp_path: Path, central: CentralSystem
) -> None:
    """A crash between the edge store's write and the link's queue: at the next start
    the link queues the Start of an open session it never saw and the Stop of a
    session that closed while it was not listening."""
    clock = SimClock(T0)
    first = OcppShed(tmp_path, central, clock)
    first.board.online()
    await booted(first)
    first.board.load_w.update({1: 500.0, 2: 500.0})
    first.board.event(1, "card", CARD)
    await first.run(120)
    await first.settle(lambda: 100 in central.starts)
    first.service._listeners.remove(first.link.on_action)  # the link misses what follows
    first.board.event(1, "button")  # A closes unseen
    first.board.event(2, "card", OTHER_CARD)  # B starts unseen
    await first.run(120)
    assert len(closed(first)) == 1 and first.service.core.ports[2].session is not None
    await first.close()

    second = OcppShed(tmp_path, central, clock, wh={p: int(first.board.wh[p]) for p in PORTS})
    second.board.relay, second.board.load_w = first.board.relay, first.board.load_w
    try:
        second.board.online()
        second.start()
        await second.run_until(lambda: second.link.accepted and second.link.store.depth() == 0)
        assert central.stops[100][0]["reason"] == "Local"  # A's Stop, from the edge store
        start_b = central.starts[tx_of(central, 2)]
        assert start_b["id_tag"] == OTHER_CARD
        second.board.event(2, "button")
        await second.run(30)
        await second.settle(lambda: tx_of(central, 2) in central.stops)
        check_invariants(central, closed(second))
    finally:
        await second.close()


async def test_a_wrong_password_is_refused_and_retried(
    tmp_path: Path, central: CentralSystem
) -> None:
    shed = OcppShed(tmp_path, central, SimClock(T0), password="not-the-password")
    try:
        shed.start()
        await shed.settle(lambda: central.refused_logins == 1)
        waited = await shed.run_until(lambda: central.refused_logins == 2, max_s=30, step_s=1)
        assert waited <= 3  # retried after the first backoff (1 s +- 20 %)
        assert central.messages == [] and shed.link.counts["errors"] >= 1
    finally:
        await shed.close()


def test_the_ocpp_password_may_come_from_the_environment_or_a_credential(tmp_path: Path) -> None:
    path = tmp_path / "shed.toml"
    path.write_text('[shed]\nid = "demo-1"\n[[boards]]\nid = "b1"\nports = [1, 2]\n'
                    '[ocpp]\nurl = "wss://csms.example.com/ocpp"\ncharge_point_id = "SHED-1"\n',
                    "utf-8")  # fmt: skip
    s = load_settings(path, {"EBSHED_OCPP_PASSWORD": "from-the-environment"})
    assert s.ocpp is not None and s.ocpp.password == "from-the-environment"
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "ocpp_password").write_text("from-a-credential\n", "utf-8")
    s = load_settings(path, {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")})
    assert s.ocpp is not None and s.ocpp.password == "from-a-credential"
    assert load_settings(path, {}).ocpp.password is None  # type: ignore[union-attr]


def test_ocpp_config_is_validated(tmp_path: Path) -> None:
    ok = shed_settings(tmp_path, "wss://csms.example.com/ocpp")
    assert ok.ocpp is not None and ok.ocpp.meter_interval_s == 60
    for bad in ({"url": "http://x"}, {"charge_point_id": "has space"}, {"heartbeat_s": 1},
                {"meter_interval_s": -1}, {"colour": "red"}):  # fmt: skip
        with pytest.raises(ConfigError, match="ocpp"):
            shed_settings(tmp_path, str(bad.pop("url", "ws://127.0.0.1:1/ocpp")), **bad)


@pytest.mark.broker
async def test_the_controller_runs_the_link_when_ocpp_is_configured(
    tmp_path: Path, central: CentralSystem
) -> None:
    """`running_controller` (what `ebshed controller run` runs) with the real broker:
    the [ocpp] section alone makes the shed boot at the central system."""
    host, port = mqtt_broker_address()
    base = harness_settings(f"t-{uuid.uuid4().hex[:12]}", tmp_path, host, port)
    settings = base.model_copy(update={"ocpp": OcppSettings(
        url=central.url, charge_point_id="SHED-RT-1", password=PASSWORD, heartbeat_s=60)})
    clock = SimClock(T0)
    async with running_controller(settings, clock) as service:
        await wait_for(lambda: len(central.of("StatusNotification")) == 5)
        assert central.paths == ["/ocpp/SHED-RT-1"]
        # no board has reported yet: every socket is Unavailable, a remote start is refused
        assert [central.statuses(c)[-1] for c in PORTS] == ["Unavailable"] * 4
        res = await central.send(call.RemoteStartTransaction(id_tag="APP-1", connector_id=1))
        assert res.status == "Rejected" and not service.core.open_sessions()
    assert (tmp_path / f"{settings.shed.id}-ocpp.sqlite").exists()
    await wait_for(lambda: central.cp is None or central.ended != [])


async def wait_for(check: Callable[[], bool], real_s: float = 10.0) -> None:
    for _ in range(int(real_s / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")
