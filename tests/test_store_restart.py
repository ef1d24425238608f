"""Persistence on real SQLite files, and restarts in the middle of sessions."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

from controller.clock import SimClock
from controller.core.fsm import SocketState
from controller.core.model import Authorization, Card, Session
from controller.service import ControllerService
from controller.settings import Settings, settings_from_dict
from controller.store import EdgeStore, open_engine
from firmware_bridge.messages import BoardStatus, CmdAck, PortCommand, Telemetry
from tests.core_helpers import T0


class RecordingBridge:
    """Stands in for the MQTT bridge: acks every command like a healthy board."""

    def __init__(self) -> None:
        self.service: ControllerService | None = None
        self.sent: list[PortCommand] = []
        self.relay: dict[int, bool] = {}
        self.on_change: Callable[[int], None] | None = None

    def send_command(self, cmd: PortCommand) -> None:
        self.sent.append(cmd)
        self.relay[cmd.port] = cmd.op != "off"
        assert self.service is not None
        self.service.on_message(CmdAck(cmd.port, cmd.id, True, self.relay[cmd.port]))
        if cmd.op == "off" and self.on_change is not None:  # a board reports the change
            self.on_change(cmd.port)

    def publish_port_state(self, *args: object) -> None:
        pass


def settings(tmp_path: Path) -> Settings:
    return settings_from_dict(
        {
            "shed": {"id": "demo-1", "data_dir": str(tmp_path)},
            "boards": [{"id": "b1", "ports": [1, 2, 3, 4]}],
            "cards": [{"uid": "04a1b2c3", "balance_fen": 300}],
        }
    )


class Shed:
    """A controller service on a SQLite file, fed by hand like a board would."""

    def __init__(self, tmp_path: Path, clock: SimClock, ids: itertools.count[int]) -> None:
        self.clock = clock
        self.service = ControllerService(settings(tmp_path), clock, new_id=lambda: f"id{next(ids)}")
        self.bridge = RecordingBridge()
        self.bridge.service = self.service
        self.service.bridge = self.bridge
        self.bridge.on_change = lambda port: self.sample(port, 0.0, self.wh.get(port, 0))
        self.seq = 0
        self.wh: dict[int, int] = {}

    def sample(self, port: int, w: float, wh: int, relay: bool | None = None) -> None:
        self.seq += 1
        self.wh[port] = wh
        on = self.bridge.relay.get(port, False) if relay is None else relay
        self.service.on_message(
            Telemetry(port, self.clock.now_ms(), self.seq, 230.0, w / 230, w, wh, on, 30.0)
        )

    def online(self) -> None:
        self.service.on_message(BoardStatus("b1", True))
        for p in (1, 2, 3, 4):
            self.sample(p, 0.0, 5000 * p, relay=False)


def test_session_rows_are_written_at_start_checkpointed_and_closed(tmp_path: Path) -> None:
    clock, ids = SimClock(T0), itertools.count(1)
    shed = Shed(tmp_path, clock, ids)
    shed.online()
    session = shed.service.start_session(1, Authorization("order", "o-1", 500))
    assert isinstance(session, Session)
    store = shed.service.store
    assert [r.id for r in store.all_sessions()] == [session.id]
    wh = 5000
    for _ in range(18):  # 3 minutes at 240 W
        clock.advance(10)
        wh += 1 if _ % 3 else 0
        shed.sample(1, 240.0, wh)
        shed.service.tick()
    row = store.all_sessions()[0]
    assert row.ended_ms is None and row.energy_wh == session.energy_wh > 0
    shed.service.stop_session(1)
    row = store.all_sessions()[0]
    assert row.ended_ms is not None and row.end_reason == "operator"
    assert row.billed_fen + row.refund_fen == 500
    assert row.bill is not None and row.bill["total_fen"] >= row.billed_fen


def test_restart_in_the_middle_neither_loses_nor_duplicates_a_session(tmp_path: Path) -> None:
    clock, ids = SimClock(T0), itertools.count(1)
    first = Shed(tmp_path, clock, ids)
    first.online()
    s1 = first.service.start_session(1, Authorization("order", "o-1", 500))
    s2 = first.service.start_session(2, Authorization("order", "o-2", 500))
    assert isinstance(s1, Session) and isinstance(s2, Session)
    wh1, wh2 = 5000, 10000
    for i in range(120):  # 20 minutes
        clock.advance(10)
        wh1 += i % 2
        wh2 += i % 3 == 0
        first.sample(1, 200.0, wh1)
        first.sample(2, 120.0, wh2)
        first.service.tick()
    # crash: no shutdown. Port 1 keeps running on its lease, port 2's relay was cut.
    clock.advance(90)
    wh1 += 5
    second = Shed(tmp_path, clock, ids)
    assert {s.id for s in second.service.core.open_sessions()} == {s1.id, s2.id}
    second.service.on_message(BoardStatus("b1", True))
    second.bridge.relay = {1: True}
    second.seq = 1000
    second.sample(1, 200.0, wh1)
    second.sample(2, 0.0, wh2 + 3, relay=False)
    core = second.service.core
    assert core.ports[1].state is SocketState.CHARGING
    assert core.ports[1].session is not None and core.ports[1].session.id == s1.id
    assert second.bridge.sent[0].op == "renew"
    closed = {s.id: s for s in second.service.closed}
    assert closed[s2.id].end_reason == "interrupted"
    assert closed[s2.id].energy_wh == wh2 + 3 - 10000  # the register says what flowed
    second.service.stop_session(1)
    rows = {r.id: r for r in second.service.store.all_sessions()}
    assert len(rows) == 2
    assert rows[s1.id].energy_wh == wh1 - 5000
    assert all(r.ended_ms is not None for r in rows.values())


def test_card_debit_is_recorded_once(tmp_path: Path) -> None:
    store = EdgeStore(open_engine(tmp_path / "x.sqlite"))
    store.upsert_card(Card("04A1B2C3", 300), T0)
    store.debit_card("04A1B2C3", 25, 275, "s1", T0)
    store.debit_card("04A1B2C3", 25, 275, "s1", T0)  # replayed after a restart
    assert store.cards()[0].balance_fen == 275


def test_cards_from_config_are_loaded(tmp_path: Path) -> None:
    clock = SimClock(T0)
    service = ControllerService(settings(tmp_path), clock)
    assert service.core.cards["04A1B2C3"].balance_fen == 300
