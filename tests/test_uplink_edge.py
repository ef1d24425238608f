"""The shed's side of the central link: outbox records and commands carried out once."""

from __future__ import annotations

import itertools
from pathlib import Path

import httpx

from controller.clock import SimClock
from controller.core.model import Authorization, Session
from controller.settings import settings_from_dict
from controller.uplink import CommandPoller
from tests.core_helpers import T0
from tests.test_store_restart import Shed

CENTRAL = {"url": "http://127.0.0.1:9", "token": "t" * 20}


def central_shed(tmp_path: Path) -> Shed:
    shed = Shed(tmp_path, SimClock(T0), itertools.count(1))
    raw = shed.service.settings.model_dump()
    raw["central"] = CENTRAL
    settings = settings_from_dict(raw)
    # a fresh service on the same database, now reporting to a central API
    from controller.service import ControllerService

    shed.service = ControllerService(settings, shed.clock, new_id=lambda: f"x{next(_ids)}")
    shed.bridge.service = shed.service
    shed.service.bridge = shed.bridge
    shed.online()
    return shed


_ids = itertools.count(1)


def poller(shed: Shed) -> CommandPoller:
    client = httpx.AsyncClient(base_url=CENTRAL["url"])  # never used by execute()
    return CommandPoller(shed.service, client, shed.clock)


def test_outbox_gets_versioned_records_for_sessions_sockets_and_bays(tmp_path: Path) -> None:
    shed = central_shed(tmp_path)
    shed.service.tick()
    store = shed.service.store
    first = store.outbox_batch(500)
    sockets = [r for r in first if r["kind"] == "socket"]
    assert {r["key"] for r in sockets} == {"1", "2", "3", "4"}  # each went online: idle
    store.outbox_delete(r["id"] for r in first)
    session = shed.service.start_session(2, Authorization("order", "EBS0001", 300))
    assert isinstance(session, Session)
    shed.service.stop_session(2)
    shed.service.tick()
    records = store.outbox_batch(500)
    mine = [r for r in records if r["kind"] == "session"]
    assert [r["version"] for r in mine] == [1, 2]  # opened, closed: versions of one key
    assert mine[-1]["data"]["ended_ms"] is not None
    assert mine[-1]["data"]["refund_fen"] + mine[-1]["data"]["billed_fen"] == 300
    states = [r["data"]["state"] for r in records if r["kind"] == "socket"]
    assert states == ["authorized", "finishing", "idle"]  # changes only, in order


def test_no_outbox_without_a_central_api(tmp_path: Path) -> None:
    shed = Shed(tmp_path, SimClock(T0), itertools.count(1))
    shed.online()
    shed.service.start_session(1, Authorization("order", "EBS0002", 300))
    shed.service.tick()
    assert shed.service.store.outbox_depth() == 0


def test_a_command_is_carried_out_once(tmp_path: Path) -> None:
    shed = central_shed(tmp_path)
    p = poller(shed)
    cmd = {"id": "c-1", "seq": 1, "kind": "start_session",
           "data": {"port": 3, "order_no": "EBS20261122A0007", "prepaid_fen": 300,
                    "mode": "until_full"}}
    first = p.execute(cmd)
    assert first["ok"] and first["data"]["session_id"]
    again = p.execute(cmd)  # delivered twice (a retried poll): same answer, nothing new
    assert again == first
    assert len(shed.service.core.open_sessions()) == 1
    busy = p.execute({**cmd, "id": "c-2", "seq": 2})
    assert not busy["ok"] and busy["code"] == "authorized"


def test_bad_commands_change_nothing(tmp_path: Path) -> None:
    shed = central_shed(tmp_path)
    p = poller(shed)
    bad = [
        {"id": "b1", "seq": 1, "kind": "start_session",
         "data": {"port": 3, "order_no": "X", "prepaid_fen": 3.0}},
        {"id": "b2", "seq": 2, "kind": "start_session", "data": {"port": 3}},
        {"id": "b3", "seq": 3, "kind": "start_session",
         "data": {"port": 3, "order_no": "X", "prepaid_fen": 300, "mode": "forever"}},
        {"id": "b4", "seq": 4, "kind": "self_destruct", "data": {}},
        {"id": "b5", "seq": 5, "kind": "tariff", "data": {"id": "t", "kind": "power_tier"}},
    ]
    codes = [p.execute(c)["code"] for c in bad]
    assert codes == ["bad_command", "bad_command", "bad_command", "unknown_command",
                     "bad_command"]
    assert shed.service.core.open_sessions() == []
    assert [r.id for r in shed.service.store.unreported_commands()] == [c["id"] for c in bad]


def test_tariff_and_cards_commands(tmp_path: Path) -> None:
    shed = central_shed(tmp_path)
    p = poller(shed)
    tariff = {"id": "night", "version": 2, "name": "1元/3小时", "kind": "power_tier",
              "tiers": [{"max_w": 1100, "fen_per_hour": "33.33"}]}
    assert p.execute({"id": "t1", "seq": 1, "kind": "tariff", "data": tariff})["ok"]
    session = shed.service.start_session(1, Authorization("order", "EBS3", 300))
    assert isinstance(session, Session) and session.tariff.id == "night"
    cards = {"cards": [{"uid": "0a0b0c0d", "balance_fen": 800}]}
    assert p.execute({"id": "k1", "seq": 2, "kind": "cards", "data": cards})["ok"]
    assert shed.service.core.cards["0A0B0C0D"].balance_fen == 800
