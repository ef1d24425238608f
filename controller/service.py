"""The edge service: wires the pure core to the device bridge and the store.

Device messages go straight from the bridge into `ShedCore.handle`; the
actions that come back are carried out here and nowhere else: commands and
state go to the bridge, records to the store. A one-second tick drives the
core's timers. This module decides no policy: every rule is in the core.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.clock import Clock
from controller.core.model import (
    Action,
    AlarmChanged,
    Authorization,
    Card,
    CardDebited,
    CardRefused,
    PublishState,
    Refusal,
    SendCommand,
    Session,
    SessionCheckpoint,
    SessionClosed,
    SessionOpened,
)
from controller.core.shed import ShedCore
from controller.settings import Settings
from controller.shed_tariff import META_KEY as TARIFF_META
from controller.shed_tariff import billed_tariff
from controller.store import EdgeStore, open_engine
from controller.uplink_records import Record, RecordMaker, tariff_record
from firmware_bridge.messages import DeviceMessage, PortCommand

log = logging.getLogger("ebshed.controller")
TICK_S = 1.0


class Bridge(Protocol):
    def send_command(self, cmd: PortCommand) -> None: ...

    def publish_port_state(
        self, port: int, state: str, session: str | None, w: float, session_wh: int, since: int
    ) -> None: ...


@dataclass(slots=True)
class ServiceStats:
    messages: int = 0
    commands: int = 0
    sessions_opened: int = 0
    sessions_closed: int = 0
    card_refusals: dict[str, int] = field(default_factory=dict)


class ControllerService:
    """One shed's controller. `bridge` is attached before `run()`."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        store: EdgeStore | None = None,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.rules = settings.rule_config()
        if store is None:
            settings.db_path.parent.mkdir(parents=True, exist_ok=True)
            store = EdgeStore(open_engine(settings.db_path))
        self.store = store
        self.core = ShedCore(
            settings.layout(),
            self.rules,
            billed_tariff(settings, store.meta(TARIFF_META)),
            new_id or (lambda: uuid.uuid4().hex),
            clock.now_ms(),
        )
        self.bridge: Bridge | None = None
        self.stats = ServiceStats()
        self.closed: list[Session] = []  # closed since start, for summaries and tests
        self._checkpoints: dict[str, Session] = {}
        self._listeners: list[Callable[[Action], None]] = []
        # Records for the central API, if this shed reports to one.
        self.records = RecordMaker() if settings.central is not None else None
        self._outbox: list[Record] = []
        self._outbox_listeners: list[Callable[[], None]] = []
        self.uplink: Any = None  # set by the runtime when a central API is configured
        self.poller: Any = None
        self._restore()
        self.report_tariff()

    def _restore(self) -> None:
        for raw in self.settings.cards:
            card = Card(
                str(raw["uid"]).upper(),
                int(raw.get("balance_fen", 0)),
                raw.get("plan_until_ms"),
                bool(raw.get("blocked", False)),
            )
            if card.uid not in {c.uid for c in self.store.cards()}:
                self.store.upsert_card(card, self.clock.now_ms(), note="config")
        self.core.set_cards(self.store.cards())
        sessions = self.store.open_sessions(self.rules)
        self.core.restore(sessions, self.store.open_alarms())
        if sessions:
            log.info("restored %d open session(s); reconciling with the boards", len(sessions))

    def report_tariff(self) -> None:
        """Tell the central API the tariff new sessions are billed at (at start and
        whenever it changes), so its pages post the price the shed bills."""
        if self.records is not None:
            self._outbox.append(tariff_record(self.core.tariff, self.clock.now_ms()))
            self.flush_outbox()

    def add_listener(self, fn: Callable[[Action], None]) -> None:
        self._listeners.append(fn)

    def on_outbox(self, fn: Callable[[], None]) -> None:
        """Called after records were written to the outbox (the uplink wakes up)."""
        self._outbox_listeners.append(fn)

    # ---- inputs ------------------------------------------------------------

    def on_message(self, msg: DeviceMessage) -> None:
        self.stats.messages += 1
        self.apply(self.core.handle(msg, self.clock.now_ms()))

    def start_session(self, port: int, auth: Authorization) -> Session | Refusal:
        result, actions = self.core.authorize(port, auth, self.clock.now_ms())
        self.apply(actions)
        return result

    def stop_session(
        self, port: int, reason: str = "operator", *,
        session_id: str | None = None, auth_ref: str | None = None,
    ) -> Refusal | None:  # fmt: skip
        refusal, actions = self.core.stop(port, reason, self.clock.now_ms(),
                                          session_id=session_id, auth_ref=auth_ref)  # fmt: skip
        self.apply(actions)
        return refusal

    def disable(self, port: int, reason: str) -> Refusal | None:
        refusal, actions = self.core.disable(port, reason, self.clock.now_ms())
        self.apply(actions)
        return refusal

    def enable(self, port: int) -> Refusal | None:
        refusal, actions = self.core.enable(port, self.clock.now_ms())
        self.apply(actions)
        return refusal

    def clear_fault(self, port: int) -> Refusal | None:
        refusal, actions = self.core.clear_fault(port, self.clock.now_ms())
        self.apply(actions)
        return refusal

    def acknowledge(self, alarm_id: str, by: str, note: str) -> Refusal | None:
        refusal, actions = self.core.acknowledge(alarm_id, by, note, self.clock.now_ms())
        self.apply(actions)
        return refusal

    def tick(self) -> None:
        now = self.clock.now_ms()
        self.apply(self.core.tick(now))
        if self._checkpoints:
            self.store.save_sessions(self._checkpoints.values(), now)
            self._checkpoints.clear()
        self.flush_outbox()

    def flush_outbox(self) -> None:
        if self._outbox:
            self.store.enqueue(self._outbox)
            self._outbox.clear()
            for listener in self._outbox_listeners:
                listener()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Drive the core's timers until `stop` is set."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            self.tick()
            await self.clock.sleep(TICK_S)

    def shutdown(self) -> None:
        """Persist every open session as it stands (the leases keep the boards safe)."""
        self.store.save_sessions(self.core.open_sessions(), self.clock.now_ms())

    # ---- outputs -----------------------------------------------------------

    def apply(self, actions: list[Action]) -> None:
        if not actions:
            return
        now = self.clock.now_ms()
        for action in actions:
            if isinstance(action, SendCommand):
                self.stats.commands += 1
                if self.bridge is not None:
                    self.bridge.send_command(action.cmd)
            elif isinstance(action, PublishState):
                if self.bridge is not None:
                    self.bridge.publish_port_state(
                        action.port,
                        action.state,
                        action.session,
                        action.w,
                        action.session_wh,
                        action.since,
                    )
            elif isinstance(action, SessionCheckpoint):
                self._checkpoints[action.session.id] = action.session
            elif isinstance(action, SessionOpened):
                self.stats.sessions_opened += 1
                self.store.save_sessions([action.session], now)
            elif isinstance(action, SessionClosed):
                self.stats.sessions_closed += 1
                self._checkpoints.pop(action.session.id, None)
                self.store.save_sessions([action.session], now)
                self.closed.append(action.session)
            elif isinstance(action, AlarmChanged):
                alarm = action.alarm
                self.store.save_alarms([alarm])
                if alarm.active and alarm.acked_ms is None:
                    log.warning("alarm %s raised: %s", alarm.kind, alarm.detail)
                else:
                    state = "acknowledged" if alarm.acked_ms else "cleared"
                    log.info("alarm %s %s: %s", alarm.kind, state, alarm.detail)
            elif isinstance(action, CardDebited):
                self.store.debit_card(
                    action.uid, action.fen, action.balance_fen, action.session_id, now
                )
            elif isinstance(action, CardRefused):
                refusals = self.stats.card_refusals
                refusals[action.reason] = refusals.get(action.reason, 0) + 1
            if self.records is not None:
                self._outbox += self.records.records_for(action, now)
            for listener in self._listeners:
                listener(action)
        if self._outbox and any(isinstance(a, SessionOpened | SessionClosed) for a in actions):
            self.flush_outbox()  # money-relevant records do not wait for the next tick
