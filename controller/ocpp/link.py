"""The shed as an OCPP 1.6J charge point (docs/ocpp.md).

One charge point per shed, each socket a connector (1..N, 0 the whole shed),
over a websocket (subprotocol `ocpp1.6`) to `[ocpp] url` + `/` +
`charge_point_id`, with HTTP basic auth when `password` is set.

`OcppLink` observes the controller through `ControllerService.add_listener`
and starts, stops, disables and enables sockets through the service's
methods, like the central API's `CommandPoller`. Every translation (states to
statuses, end reasons to stop reasons, registers to meterStart/meterStop,
configuration keys) is in `controller/ocpp/mapping.py`; this module moves
messages and decides nothing.

- Transaction messages (StartTransaction, MeterValues of a transaction,
  StopTransaction) go through a queue on disk (`controller/ocpp/queue.py`),
  sent one at a time, oldest first, whenever the link is up; a transactionId
  is bound to its session when the Start is answered, however late.
- StatusNotification is not queued: after every (re)connect each connector's
  status is sent again, afterwards every change.
- The connection is retried after every error with backoff (1 s doubling to
  5 min, jittered), sleeping on the injected clock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import websockets
from ocpp.exceptions import OCPPError
from ocpp.exceptions import ValidationError as OcppValidationError
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from controller import __version__
from controller.clock import Clock
from controller.core.model import (
    Action as CoreAction,
)
from controller.core.model import (
    AlarmChanged,
    Authorization,
    PublishState,
    Session,
    SessionClosed,
    SessionOpened,
)
from controller.live_snapshot import live_snapshot
from controller.ocpp import mapping as m
from controller.ocpp.queue import Message, OcppStore, Transaction
from controller.service import ControllerService
from controller.settings import OcppSettings
from controller.store import SessionRow, row_to_session
from controller.uplink import Backoff

log = logging.getLogger("ebshed.ocpp")
SUBPROTOCOL = Subprotocol("ocpp1.6")
VENDOR = "ebshed"

# What ends one connection (the loop then waits and connects again).
LINK_ERRORS = (
    OSError,
    TimeoutError,
    websockets.exceptions.WebSocketException,
    OCPPError,
    OcppValidationError,
)


class _Reconnect(Exception):
    """A soft reset: drop the connection and boot again."""


F = TypeVar("F", bound=Callable[..., Any])


def _on(action: Action) -> Callable[[F], F]:
    return cast(Callable[[F], F], on(action))


def _after(action: Action) -> Callable[[F], F]:
    return cast(Callable[[F], F], after(action))


class _ChargePoint(ChargePoint):  # type: ignore[misc]
    """The library's charge point with this shed's handlers; each asks the link."""

    def __init__(self, cp_id: str, connection: Any, link: OcppLink, timeout_s: float) -> None:
        super().__init__(cp_id, connection, response_timeout=timeout_s)
        self.link = link

    @_on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag: str, connector_id: int | None = None,
                        **_: Any) -> call_result.RemoteStartTransaction:  # fmt: skip
        return call_result.RemoteStartTransaction(self.link.remote_start(id_tag, connector_id))

    @_on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id: int) -> call_result.RemoteStopTransaction:
        return call_result.RemoteStopTransaction(self.link.remote_stop(transaction_id))

    @_on(Action.change_availability)
    def on_change_availability(self, connector_id: int,
                               type: str) -> call_result.ChangeAvailability:  # fmt: skip
        return call_result.ChangeAvailability(self.link.change_availability(connector_id, type))

    @_on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None) -> call_result.GetConfiguration:
        known, unknown = m.get_configuration(self.link.config, key)
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @_on(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str) -> call_result.ChangeConfiguration:
        return call_result.ChangeConfiguration(self.link.change_configuration(key, value))

    @_on(Action.trigger_message)
    def on_trigger(self, requested_message: str,
                   connector_id: int | None = None) -> call_result.TriggerMessage:  # fmt: skip
        return call_result.TriggerMessage(
            m.trigger_status(requested_message, connector_id, self.link.ports)
        )

    @_after(Action.trigger_message)
    def after_trigger(self, requested_message: str, connector_id: int | None = None) -> None:
        if m.trigger_status(requested_message, connector_id, self.link.ports) == "Accepted":
            self.link.trigger(requested_message, connector_id)

    @_on(Action.reset)
    def on_reset(self, type: str) -> call_result.Reset:
        return call_result.Reset(m.reset_status(type))

    @_after(Action.reset)
    def after_reset(self, type: str) -> None:
        if m.reset_status(type) == "Accepted":
            self.link.soft_reset()

    @_on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, message_id: str | None = None,
                         data: str | None = None) -> call_result.DataTransfer:  # fmt: skip
        status, out = self.link.data_transfer(vendor_id, message_id)
        return call_result.DataTransfer(status, out)

    @_on(Action.unlock_connector)
    def on_unlock(self, connector_id: int) -> call_result.UnlockConnector:
        return call_result.UnlockConnector("NotSupported")  # sockets have no lock


class OcppLink:
    def __init__(
        self,
        service: ControllerService,
        settings: OcppSettings,
        clock: Clock,
        path: Path | None = None,
        rng: random.Random | None = None,
        response_timeout_s: float = 30.0,
    ) -> None:
        self.service, self.settings, self.clock = service, settings, clock
        shed = service.settings.shed
        self.store = OcppStore(path or Path(shed.data_dir) / f"{shed.id}-ocpp.sqlite")
        self.ports = sorted(service.core.ports)
        self.config = m.default_configuration(len(self.ports), settings.heartbeat_s,
                                              settings.meter_interval_s)  # fmt: skip
        for key, value in self.store.config().items():
            if key in self.config and not m.KEYS[key].readonly:
                self.config[key] = value
        self.backoff = Backoff(rng or random.Random())
        self.response_timeout_s = response_timeout_s
        self.cp: _ChargePoint | None = None
        self.accepted = False
        self.boot_status: str | None = None
        self.wake = asyncio.Event()  # queue, statuses or authorizations have work
        self.boot_now = asyncio.Event()
        self.heartbeat_now = asyncio.Event()
        self.meter_changed = asyncio.Event()
        self.reset = asyncio.Event()
        self.statuses: deque[tuple[m.ConnectorStatus, int]] = deque()  # to send, oldest first
        self.last_status: dict[int, m.ConnectorStatus] = {}  # the newest queued or sent
        self.fault_kind: dict[int, str] = {}
        self.authorize: deque[tuple[str, int, str]] = deque()  # (session, port, idTag)
        self.counts = {"connects": 0, "errors": 0, "sent": 0, "refused": 0, "dropped": 0}
        self._tasks: list[asyncio.Task[Any]] = []
        service.add_listener(self.on_action)
        self._reconcile()

    # ---- what the controller does ------------------------------------------

    def on_action(self, action: CoreAction) -> None:
        if isinstance(action, SessionOpened):
            self._open(action.session)
        elif isinstance(action, SessionClosed):
            self._close(action.session)
        elif isinstance(action, PublishState):
            self._changed(action.port, action.state)
        elif isinstance(action, AlarmChanged):
            alarm = action.alarm
            if alarm.port is not None and alarm.kind in m.ERROR_OF_ALARM:
                if alarm.active or alarm.acked_ms is None:
                    self.fault_kind[alarm.port] = alarm.kind
                self._changed(alarm.port)
            if alarm.cuts_shed:
                self._changed(0)

    def _changed(self, connector: int, state: str | None = None, force: bool = False) -> None:
        """Queue a connector's new status (in memory: only while the central system
        has accepted the boot; every status is sent afresh after the next one)."""
        if not self.accepted:
            return
        status = self.status(connector, state)
        if force or self.last_status.get(connector) != status:
            self.statuses.append((status, self.clock.now_ms()))
            self.last_status[connector] = status
            self.wake.set()

    def _open(self, s: Session) -> None:
        if s.first_wh is None:  # no register yet: the Start waits for the close
            return
        tag = m.id_tag(s.auth.kind, s.auth.ref)
        start = m.meter_start(s.first_wh)
        t = Transaction(s.id, s.port, tag, start, s.started_ms, None, False, False)
        payload = {"connector_id": s.port, "id_tag": tag, "meter_start": start,
                   "timestamp": m.iso(s.started_ms)}  # fmt: skip
        if self.store.open_transaction(t, payload) and m.needs_authorize(s.auth.kind, s.auth.ref):
            self.authorize.append((s.id, s.port, tag))
        self.wake.set()

    def _close(self, s: Session) -> None:
        if self.store.transaction(s.id) is None:
            self._open(s)
        t = self.store.transaction(s.id)
        if t is None:
            log.warning("session %s closed without a register reading: not reported", s.id)
            return
        stop = m.meter_now(s.first_wh, s.energy_wh)
        stop_ms = s.stop_ms or s.ended_ms or self.clock.now_ms()
        port = self.service.core.ports.get(s.port)
        temp = port.temp_c if port is not None else None
        payload = {
            "meter_stop": stop,
            "timestamp": m.iso(stop_ms),
            "reason": m.stop_reason(s.end_reason),
            "id_tag": t.id_tag,
            "transaction_data": [
                m.meter_value(s.started_ms, t.meter_start, None, None, "Transaction.Begin"),
                m.meter_value(stop_ms, stop, 0.0, temp, "Transaction.End"),
            ],
        }
        self.store.queue_stop(s.id, payload)
        self.wake.set()

    def _reconcile(self) -> None:
        """After a crash between the edge store's write and this queue's: every
        open session has its Start, every session closed meanwhile its Stop."""
        open_ids = set()
        for s in self.service.core.open_sessions():
            open_ids.add(s.id)
            if self.store.transaction(s.id) is None:
                self._open(s)
        rules = self.service.rules
        for t in self.store.unstopped():
            if t.session_id in open_ids:
                continue
            with DbSession(self.service.store.engine) as db:
                row = db.scalar(select(SessionRow).where(SessionRow.id == t.session_id))
                session = row_to_session(row, rules) if row is not None else None
            if session is not None and not session.open:
                self._close(session)
            elif session is None:
                log.error("transaction of unknown session %s given up", t.session_id)
                self.store.drop_session(t.session_id)

    def samples(self) -> None:
        """A MeterValues of every running transaction (queued like Start and Stop)."""
        now = self.clock.now_ms()
        for s in self.service.core.open_sessions():
            t = self.store.transaction(s.id)
            if t is None or t.stop_queued or s.stop_ms is not None:
                continue
            port = self.service.core.ports[s.port]
            value = m.meter_value(now, m.meter_now(s.first_wh, s.energy_wh), port.w, port.temp_c)
            self.store.queue(s.id, "MeterValues", {"connector_id": s.port, "meter_value": [value]})
        self.wake.set()

    def status(self, connector: int, state: str | None = None) -> m.ConnectorStatus:
        """A connector's status now (or in `state`, as a PublishState told it)."""
        core = self.service.core
        if connector == 0:
            lockout = core.lockout()
            return m.shed_status(lockout.kind if lockout is not None else None)
        state = state or core.ports[connector].state.value
        return m.connector_status(connector, state, self.fault_kind.get(connector))

    # ---- what the central system asks ------------------------------------

    def remote_start(self, tag: str, connector: int | None) -> str:
        states = {n: p.state.value for n, p in self.service.core.ports.items()}
        port = m.remote_start_connector(connector, states)
        if port is None:
            return "Rejected"
        auth = Authorization("order", m.REMOTE_PREFIX + tag, None)
        result = self.service.start_session(port, auth)
        return "Accepted" if isinstance(result, Session) else "Rejected"

    def remote_stop(self, transaction_id: int) -> str:
        t = self.store.by_transaction_id(transaction_id)
        if t is None:
            return "Rejected"
        refusal = self.service.stop_session(t.connector, "remote", session_id=t.session_id)
        return "Accepted" if refusal is None else "Rejected"

    def change_availability(self, connector: int, kind: str) -> str:
        targets = m.availability_targets(connector, self.ports)
        if targets is None:
            return "Rejected"
        outcomes = []
        for port in targets:
            p = self.service.core.ports[port]
            running = p.session is not None
            if kind == "Inoperative":
                refusal = self.service.disable(port, "ocpp")
                refused = refusal is not None and p.state.value != "disabled"
            else:
                refusal = self.service.enable(port)
                refused = refusal is not None and p.state.value == "disabled"
            outcomes.append((refused, running))
        return m.availability_status(kind, outcomes)

    def change_configuration(self, key: str, value: str) -> str:
        status, self.config = m.change_configuration(self.config, key, value)
        if status == "Accepted":
            self.store.set_config(key, self.config[key])
            if key == "HeartbeatInterval":
                self.heartbeat_now.set()
            if key == "MeterValueSampleInterval":
                self.meter_changed.set()
        return status

    def trigger(self, message: str, connector: int | None) -> None:
        targets = [connector] if connector else [0, *self.ports]
        if message == "BootNotification":
            self.boot_now.set()
            if self.accepted:
                self._spawn(self._boot_once())
        elif message == "Heartbeat":
            self.heartbeat_now.set()
        elif message == "StatusNotification":
            for c in targets:
                self._changed(c, force=True)
        elif message == "MeterValues":
            self._spawn(self._triggered_meter_values([c for c in targets if c != 0]))

    def soft_reset(self) -> None:
        for s in self.service.core.open_sessions():
            self.service.stop_session(s.port, "soft_reset", session_id=s.id)
        self.reset.set()

    def data_transfer(self, vendor_id: str, message_id: str | None) -> tuple[str, str | None]:
        if vendor_id != VENDOR:
            return "UnknownVendorId", None
        if message_id == "live":
            snapshot = live_snapshot(self.service.core, self.clock.now_ms())
            return "Accepted", json.dumps(snapshot, separators=(",", ":"))
        return "UnknownMessageId", None

    # ---- the connection -------------------------------------------------------

    @property
    def url(self) -> str:
        return self.settings.url.rstrip("/") + "/" + self.settings.charge_point_id

    def _headers(self) -> dict[str, str]:
        if self.settings.password is None:
            return {}
        raw = f"{self.settings.charge_point_id}:{self.settings.password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    async def run(self) -> None:
        """Sample the meters and keep the connection up, until cancelled."""
        sampler = asyncio.create_task(self._sample_loop(), name="ocpp-samples")
        try:
            while True:
                try:
                    await self._connection()
                except (*LINK_ERRORS, _Reconnect) as err:
                    self.accepted, self.cp = False, None
                    if isinstance(err, _Reconnect):
                        log.info("OCPP soft reset: connecting again")
                        continue
                    self.counts["errors"] += 1
                    delay = self.backoff.failed()
                    log.warning("OCPP link to %s down (%r); %d message(s) queued, retrying"
                                " in %.1f s", self.url, err, self.store.depth(), delay)  # fmt: skip
                    await self.clock.sleep(delay)
        finally:
            await _cancel([sampler, *self._tasks])

    async def _connection(self) -> None:
        async with connect(
            self.url,
            subprotocols=[SUBPROTOCOL],
            additional_headers=self._headers(),
            open_timeout=self.response_timeout_s,
            proxy=None,
        ) as ws:
            if ws.subprotocol != SUBPROTOCOL:
                raise websockets.exceptions.InvalidHandshake("the server did not accept ocpp1.6")
            self.counts["connects"] += 1
            cp = _ChargePoint(self.settings.charge_point_id, ws, self, self.response_timeout_s)
            self.cp = cp
            self.reset.clear()
            parts = [asyncio.create_task(cp.start(), name="ocpp-receive"),
                     asyncio.create_task(self._work(cp), name="ocpp-work"),
                     asyncio.create_task(self.reset.wait(), name="ocpp-reset")]  # fmt: skip
            try:
                done, _ = await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                if self.reset.is_set():
                    raise _Reconnect()
                raise websockets.exceptions.ConnectionClosedOK(None, None)
            finally:
                await _cancel(parts)

    async def _work(self, cp: _ChargePoint) -> None:
        await self._boot(cp)
        self.backoff.ok()
        self.statuses.clear()  # every connector's status again after a (re)connect
        self.last_status.clear()
        for connector in (0, *self.ports):
            self._changed(connector)
        heartbeat = asyncio.create_task(self._heartbeat_loop(cp), name="ocpp-heartbeat")
        try:
            await self._send_loop(cp)
        finally:
            await _cancel([heartbeat])

    async def _boot(self, cp: _ChargePoint) -> None:
        while True:
            self.boot_now.clear()
            res = await self._boot_once()
            if res.status == "Accepted":
                self.accepted = True  # statuses are queued from now on
                return
            wait = m.boot_wait_s(res.status, res.interval, 60)
            log.warning("BootNotification %s; again in %d s", res.status, wait)
            await self._sleep_or(self.boot_now, wait)

    async def _boot_once(self) -> call_result.BootNotification:
        assert self.cp is not None
        res = await self.cp.call(call.BootNotification(
            charge_point_model="ebshed-shed", charge_point_vendor="ebshed",
            charge_point_serial_number=self.service.settings.shed.id[:25],
            firmware_version=__version__), suppress=False)  # fmt: skip
        self.boot_status = res.status
        if res.status == "Accepted" and res.interval > 0:
            self.config["HeartbeatInterval"] = str(res.interval)
        return res

    async def _heartbeat_loop(self, cp: _ChargePoint) -> None:
        while True:
            self.heartbeat_now.clear()
            await self._sleep_or(self.heartbeat_now, m.int_key(self.config, "HeartbeatInterval"))
            await cp.call(call.Heartbeat(), suppress=False)

    async def _sample_loop(self) -> None:
        while True:
            self.meter_changed.clear()
            every = m.int_key(self.config, "MeterValueSampleInterval")
            if every <= 0:
                await self.meter_changed.wait()
                continue
            if not await self._sleep_or(self.meter_changed, every):
                self.samples()

    async def _send_loop(self, cp: _ChargePoint) -> None:
        while True:
            self.wake.clear()
            await self._send_statuses(cp)
            await self._send_authorizations(cp)
            msg = self.store.head()
            if msg is None:
                await self._sleep_or(self.wake, 3600)
                continue
            wait_ms = msg.not_before_ms - self.clock.now_ms()
            if wait_ms > 0:
                await self._sleep_or(self.wake, wait_ms / 1000)
                continue
            await self._deliver(cp, msg)

    async def _send_statuses(self, cp: _ChargePoint) -> None:
        while self.statuses:
            status, ms = self.statuses[0]
            kwargs = status.kwargs(m.iso(ms))
            await cp.call(call.StatusNotification(**kwargs), suppress=False)
            self.statuses.popleft()

    async def _send_authorizations(self, cp: _ChargePoint) -> None:
        while self.authorize:
            session_id, port, tag = self.authorize[0]
            running = self.service.core.ports[port].session
            if running is None or running.id != session_id:  # ended meanwhile (offline)
                self.authorize.popleft()
                continue
            res = await cp.call(call.Authorize(id_tag=tag), suppress=False)
            self.authorize.popleft()
            status = (res.id_tag_info or {}).get("status")
            if m.tag_refused(status):
                log.warning("central system refused card %s (%s): stopping session %s",
                            tag, status, session_id)  # fmt: skip
                self.service.stop_session(port, "deauthorized", session_id=session_id)

    async def _deliver(self, cp: _ChargePoint, msg: Message) -> None:
        kwargs = dict(msg.payload)
        t = self.store.transaction(msg.session_id)
        if msg.action != "StartTransaction":
            if t is None or t.transaction_id is None:
                log.error("%s of session %s has no transactionId: dropped", msg.action,
                          msg.session_id)  # fmt: skip
                self.store.delivered(msg)
                self.counts["dropped"] += 1
                return
            kwargs["transaction_id"] = t.transaction_id
        try:
            res = await cp.call(getattr(call, msg.action)(**kwargs), suppress=False)
        except OCPPError as err:  # the central system answered with a CALLERROR
            self._refused(msg, err)
            return
        self.counts["sent"] += 1
        if msg.action == "StartTransaction":
            self.store.delivered(msg, int(res.transaction_id))
            status = (res.id_tag_info or {}).get("status")
            if (
                m.tag_refused(status)
                and self.config["StopTransactionOnInvalidId"] == "true"
                and t is not None
            ):
                self.service.stop_session(t.connector, "deauthorized", session_id=t.session_id)
        else:
            self.store.delivered(msg)

    def _refused(self, msg: Message, err: Exception) -> None:
        self.counts["refused"] += 1
        attempts = msg.attempts + 1
        limit = m.int_key(self.config, "TransactionMessageAttempts")
        if m.give_up(attempts, limit):
            log.error("%s of session %s refused %d times (%s): given up", msg.action,
                      msg.session_id, attempts, err)  # fmt: skip
            self.counts["dropped"] += 1
            if msg.action == "StartTransaction":
                self.store.drop_session(msg.session_id)
            else:
                self.store.delivered(msg)
            return
        delay = m.retry_delay_s(attempts, m.int_key(self.config, "TransactionMessageRetryInterval"))
        self.store.refused(msg, self.clock.now_ms() + delay * 1000)

    async def _triggered_meter_values(self, connectors: list[int]) -> None:
        cp = self.cp
        if cp is None:
            return
        now = self.clock.now_ms()
        for c in connectors:
            port = self.service.core.ports[c]
            s = port.session
            t = self.store.transaction(s.id) if s is not None else None
            if s is not None and t is not None and t.transaction_id is not None:
                register = m.meter_now(s.first_wh, s.energy_wh)
            else:
                t, register = None, port.meter.last_wh or 0
            value = m.meter_value(now, register, port.w, port.temp_c, "Trigger")
            await cp.call(call.MeterValues(connector_id=c, meter_value=[value],
                                           transaction_id=t.transaction_id if t else None))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def guarded() -> None:
            with contextlib.suppress(*LINK_ERRORS):
                await coro

        task = asyncio.ensure_future(guarded())
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    async def _sleep_or(self, event: asyncio.Event, seconds: float) -> bool:
        """Sleep on the clock until `seconds` passed or `event` is set; True: the event."""
        if event.is_set():
            return True
        waiter = asyncio.ensure_future(event.wait())
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()
        return event.is_set()

    def close(self) -> None:
        self.store.close()


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and wait for them. On Python 3.11, `asyncio.wait_for` (which
    the library's `call` uses) can swallow a cancellation that meets its answer:
    such a task runs on, so it is cancelled again until it has ended."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.05)
