"""The edge service: wires the pure core to the device bridge and the store.

Device messages go straight from the bridge into `ShedCore.handle`; the
actions that come back are carried out here and nowhere else: commands and
state go to the bridge, records to the store. A one-second tick drives the
core's timers. This module decides no policy: every rule is in the core.

Order of effects, for every step (docs/operations.md, "What survives what"):
safety `off` commands go out first, whatever the store does; then everything
the step must store (a session's start or close with its bill, card debit,
outbox record and alarms) is written in one transaction; only then do relay-on
and renew commands and state go out. A start the store refuses is undone in
the core and answered `store_failed`; any other write that fails stays queued,
in order, and is retried every tick while the `store_failed` alarm is up.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

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
from controller.store import Debit, EdgeStore, StoreWrite, open_engine
from controller.uplink_records import Record, RecordMaker, tariff_record
from firmware_bridge.messages import DeviceMessage, PortCommand

log = logging.getLogger("ebshed.controller")
TICK_S = 1.0


class Bridge(Protocol):
    def send_command(self, cmd: PortCommand) -> None: ...

    def publish_port_state(
        self, port: int, state: str, session: str | None, w: float, session_wh: int, since: int
    ) -> None: ...


# What a failing store raises: SQLite's "database or disk is full", I/O errors,
# "database is locked" after the busy timeout.
STORE_ERRORS = (SQLAlchemyError, OSError)


@dataclass(slots=True)
class StoreHealth:
    """Whether the last write reached the store; shown by /status and /metrics."""

    ok: bool = True
    since_ms: int | None = None  # failing since
    last_error: str | None = None
    failures: int = 0  # writes that failed since start
    queued: int = 0  # steps waiting to be written


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
        self.store_health = StoreHealth()
        self._checkpoints: dict[str, Session] = {}
        self._unsaved: deque[StoreWrite] = deque()  # steps not yet in the store, oldest first
        self._listeners: list[Callable[[Action], None]] = []
        # Records for the central API, if this shed reports to one.
        self.records = RecordMaker() if settings.central is not None else None
        self._outbox: list[Record] = []  # socket states etc., written with the next step
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

    @property
    def closed(self) -> list[Session]:
        """Sessions closed and stored, oldest first (read from the store, not kept)."""
        return self.store.closed_sessions(self.rules)

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
        undone = self.apply(actions)
        if isinstance(result, Session) and result.id in undone:
            return Refusal("store_failed", "the start could not be stored; nothing was switched")
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
        # A bridge that says it is not connected (the broker is away) keeps the core
        # from calling boards silent that it merely cannot hear.
        link_up = bool(getattr(self.bridge, "connected", True))
        self.apply(self.core.tick(now, link_up))
        step = StoreWrite(sessions=dict(self._checkpoints))
        self._checkpoints.clear()
        self._store(step, now)

    def flush_outbox(self) -> None:
        """Write the records made so far (and any step still waiting for the store)."""
        self._store(StoreWrite(), self.clock.now_ms())

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Drive the core's timers until `stop` is set.

        Store failures are handled inside the tick (queued and retried); anything
        else that raises ends this task, and the runtime ends the process with it."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            self.tick()
            await self.clock.sleep(TICK_S)

    def shutdown(self) -> None:
        """Persist every open session as it stands (the leases keep the boards safe)."""
        self._store(StoreWrite(sessions={s.id: s for s in self.core.open_sessions()}),
                    self.clock.now_ms())  # fmt: skip

    # ---- outputs -----------------------------------------------------------

    def apply(self, actions: list[Action]) -> set[str]:
        """Carry out the core's actions. Returns the ids of sessions whose start could
        not be stored: they were undone, and their relay was never switched on."""
        if not actions:
            return set()
        now = self.clock.now_ms()
        step = StoreWrite()
        last_off: dict[int, int] = {}
        for i, action in enumerate(actions):
            if isinstance(action, SendCommand) and action.cmd.op == "off":
                self._send(action.cmd)  # safety first: never waits for the store
                last_off[action.cmd.port] = i
            elif isinstance(action, SessionCheckpoint):
                self._checkpoints[action.session.id] = action.session
            elif isinstance(action, SessionOpened):
                step.sessions[action.session.id] = action.session
                step.opened.add(action.session.id)
            elif isinstance(action, SessionClosed):
                self._checkpoints.pop(action.session.id, None)
                step.sessions[action.session.id] = action.session
                step.closed.add(action.session.id)
            elif isinstance(action, AlarmChanged):
                step.alarms[action.alarm.id] = action.alarm
            elif isinstance(action, CardDebited):
                step.debits.append(
                    Debit(action.uid, action.fen, action.balance_fen, action.session_id)
                )
            if self.records is not None:
                self._outbox += self.records.records_for(action, now)
        opened_on = {sid: step.sessions[sid].port for sid in step.opened}
        undone = self._store(step, now) if step else set()
        not_on = {opened_on[sid] for sid in undone if sid in opened_on}  # never switched on
        for i, action in enumerate(actions):
            if isinstance(action, SendCommand):
                cmd = action.cmd
                if cmd.op != "off" and last_off.get(cmd.port, -1) < i and cmd.port not in not_on:
                    self._send(cmd)
            elif isinstance(action, PublishState):
                self._publish(action)
            elif isinstance(action, SessionOpened):
                if action.session.id in undone:
                    continue
                self.stats.sessions_opened += 1
            elif isinstance(action, SessionClosed):
                self.stats.sessions_closed += 1
            elif isinstance(action, AlarmChanged):
                _log_alarm(action)
            elif isinstance(action, CardRefused):
                refusals = self.stats.card_refusals
                refusals[action.reason] = refusals.get(action.reason, 0) + 1
            for listener in self._listeners:
                listener(action)
        return undone

    def _send(self, cmd: PortCommand) -> None:
        self.stats.commands += 1
        if self.bridge is not None:
            self.bridge.send_command(cmd)

    def _publish(self, state: PublishState) -> None:
        if self.bridge is not None:
            self.bridge.publish_port_state(
                state.port, state.state, state.session, state.w, state.session_wh, state.since
            )

    def _store(self, step: StoreWrite, now: int) -> set[str]:
        """Queue `step` (with the records made so far) and write every queued step,
        oldest first. Returns the ids of starts undone because the store failed."""
        step.records = self._outbox + step.records
        self._outbox = []
        if step:
            self._unsaved.append(step)
        wrote_records = False
        while self._unsaved:
            head = self._unsaved[0]
            try:
                self.store.write(head, now)
            except STORE_ERRORS as err:
                return self._store_failed(err, now)
            wrote_records |= bool(head.records)
            self._unsaved.popleft()
        self.store_health.queued = 0
        if not self.store_health.ok:
            self._store_recovered(now)
        if wrote_records:
            for listener in self._outbox_listeners:
                listener()
        return set()

    def _store_failed(self, err: BaseException, now: int) -> set[str]:
        health = self.store_health
        health.failures += 1
        health.last_error = f"{type(err).__name__}: {err}".splitlines()[0][:200]
        undone: set[str] = set()
        follow_up: list[Action] = []
        for queued in self._unsaved:  # a start that is not stored must not go on
            for session_id in list(queued.opened):
                follow_up += self.core.undo_start(session_id, now)
                queued.drop_session(session_id)
                undone.add(session_id)
        if health.ok:
            health.ok, health.since_ms = False, now
            log.error("store write failed, retrying every tick: %s", health.last_error)
            follow_up += self.core.store_trouble(health.last_error, now)
        self._queue_effects(follow_up, now)
        health.queued = len(self._unsaved)
        return undone

    def _store_recovered(self, now: int) -> None:
        health = self.store_health
        log.warning("store writes succeed again after %d failure(s)", health.failures)
        health.ok, health.since_ms, health.last_error = True, None, None
        self._queue_effects(self.core.store_trouble(None, now), now)
        if self._unsaved:
            self._store(StoreWrite(), now)

    def _queue_effects(self, actions: list[Action], now: int) -> None:
        """The store alarm's own effects: published and queued, never written here
        (the store is what failed), so that no write recurses into another."""
        step = StoreWrite()
        for action in actions:
            if isinstance(action, PublishState):
                self._publish(action)
            elif isinstance(action, AlarmChanged):
                step.alarms[action.alarm.id] = action.alarm
                _log_alarm(action)
            if self.records is not None:
                step.records += self.records.records_for(action, now)
            for listener in self._listeners:
                listener(action)
        if step:
            self._unsaved.append(step)


def _log_alarm(action: AlarmChanged) -> None:
    alarm = action.alarm
    if alarm.active and alarm.acked_ms is None:
        log.warning("alarm %s raised: %s", alarm.kind, alarm.detail)
    else:
        state = "acknowledged" if alarm.acked_ms else "cleared"
        log.info("alarm %s %s: %s", alarm.kind, state, alarm.detail)
