"""The brains of one shed: pure, synchronous, `now_ms` passed in.

`ShedCore` takes typed device messages, operator requests and clock ticks, and
returns a list of actions (relay commands, state publications, session and
alarm records) for the adapters to carry out. It performs no I/O and never
reads a clock, so a whole day of a shed runs in a test in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from controller.core.anomaly import ANOMALY_KINDS, Anomaly, AnomalyDetector
from controller.core.chargeend import ChargeEndDetector, Detection
from controller.core.config import RuleConfig, ShedLayout
from controller.core.fsm import SESSION_STATES, SocketState, Trigger, next_state
from controller.core.metering import PortMeter, SampleVerdict, register_delta
from controller.core.model import (
    Action,
    Alarm,
    AlarmChanged,
    Authorization,
    BayChanged,
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
from controller.core.tariffs import Tariff, Usage, closing_bill
from firmware_bridge.messages import (
    BayOccupancy,
    BoardStatus,
    CmdAck,
    CommandOp,
    DeviceMessage,
    EnvReading,
    PortCommand,
    PortEvent,
    Telemetry,
)

S = SocketState
# Enum members that every telemetry sample names, looked up once: on Python 3.11
# `Enum.MEMBER` costs several times a global look-up.
_ACCEPTED, _FIRST = SampleVerdict.ACCEPTED, SampleVerdict.FIRST
_OFFLINE = S.OFFLINE
CHECKPOINT_EVERY_MS = 60_000
# What a sample's charge-end detection does to its socket.
_DETECTED: dict[Detection, tuple[Trigger, str]] = {
    Detection.LOAD: (Trigger.LOAD_DETECTED, "load detected"),
    Detection.FULL: (Trigger.FULL_DETECTED, "battery full, floating"),
    Detection.RECHARGE: (Trigger.RECHARGE, "power rose during float"),
}
_ANOMALY_FLAGS = frozenset(ANOMALY_KINDS)
SHORT_UID_DIGITS = 4  # the low word of a UID, as RS-485 boards report it
ENV_ALARM_KIND = {"smoke": "smoke", "temp": "env_overtemp", "water": "water"}


@dataclass(slots=True)
class Port:
    number: int
    board: str
    meter: PortMeter
    state: SocketState = S.OFFLINE
    since_ms: int = 0
    session: Session | None = None
    commanded_on: bool = False
    on_acked: bool = False  # the board confirmed the relay is on for this session
    relay: bool | None = None  # as last reported
    w: float = 0.0
    temp_c: float | None = None
    over_w_since: int | None = None
    over_t_since: int | None = None
    fault_w_since: int | None = None
    last_publish_ms: int = 0
    disable_pending: str | None = None
    disabled_reason: str | None = None


@dataclass(slots=True)
class Bay:
    number: int
    port: int | None
    occupied: bool = False
    since_ms: int = 0
    alerted: bool = False
    last_seen_ms: int = 0


@dataclass(slots=True)
class PendingCommand:
    port: int
    op: CommandOp
    session_id: str | None


@dataclass(slots=True)
class Counters:
    samples: int = 0
    discarded: dict[str, int] = field(default_factory=dict)
    meter_reboots: int = 0
    meter_jumps: int = 0
    refusals: dict[str, int] = field(default_factory=dict)

    def bump(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1


class ShedCore:
    def __init__(
        self,
        layout: ShedLayout,
        rules: RuleConfig,
        tariff: Tariff,
        new_id: Callable[[], str],
        now_ms: int,
    ) -> None:
        layout.validate()
        rules.validate()
        self.layout = layout
        self.rules = rules
        self.tariff = tariff
        self._new_id = new_id
        board_of = layout.board_of()
        max_w = rules.socket_max_w * (1 + rules.overpower_tolerance)
        # Per-sample thresholds, worked out once (the rules are frozen).
        self._overpower_w = max_w
        self._publish_every_ms = rules.state_publish_every_s * 1000
        self.ports: dict[int, Port] = {
            p: Port(p, board_of[p], PortMeter(max_w), since_ms=now_ms) for p in layout.ports
        }
        self.bays: dict[int, Bay] = {b: Bay(b, p) for b, p in layout.bays.items()}
        self.board_seen: dict[str, int] = {}
        self.board_online: dict[str, bool] = dict.fromkeys(layout.boards, False)
        self.cards: dict[str, Card] = {}
        self.alarms: dict[str, Alarm] = {}
        self.pending: dict[str, PendingCommand] = {}
        self.counters = Counters()
        self._over_budget_since: int | None = None
        self._started_ms = now_ms  # a board's lease is bounded from here after a restart
        self._listening_ms = now_ms  # boards are heard from here on (restart, broker back)
        self._link_down_since: int | None = None

    # ---- queries -----------------------------------------------------------

    def shed_power_w(self) -> float:
        return sum(p.w for p in self.ports.values() if p.state is not S.OFFLINE)

    def open_sessions(self) -> list[Session]:
        return [p.session for p in self.ports.values() if p.session is not None]

    def free_sockets(self) -> int:
        return sum(1 for p in self.ports.values() if p.state is S.IDLE)

    def free_bays(self) -> int:
        return sum(1 for b in self.bays.values() if not b.occupied)

    def lockout(self) -> Alarm | None:
        """The alarm that keeps every socket off, if one does."""
        for a in self.alarms.values():
            if a.cuts_shed and (a.active or a.acked_ms is None):
                return a
        return None

    # ---- operator and payment requests ------------------------------------

    def can_start(self, port: int) -> Refusal | None:
        p = self.ports.get(port)
        if p is None:
            return Refusal("unknown_port", f"socket {port} does not exist in this shed")
        if (alarm := self.lockout()) is not None:
            return Refusal("safety_lockout", f"shed locked by {alarm.kind} alarm {alarm.id}")
        if p.state is not S.IDLE:
            return Refusal(p.state.value, f"socket {port} is {p.state.value}")
        if p.meter.last_wh is None:
            return Refusal("no_meter_reading", f"socket {port} has not reported its meter yet")
        limit = self.rules.budget_w * self.rules.budget_start_fraction
        if self.shed_power_w() > limit:
            return Refusal("over_budget", f"shed draws more than {limit:.0f} W")
        return None

    def authorize(
        self, port: int, auth: Authorization, now_ms: int
    ) -> tuple[Session | Refusal, list[Action]]:
        refusal = self.can_start(port)
        if refusal is None and auth.prepaid_fen is not None and auth.prepaid_fen <= 0:
            refusal = Refusal("no_money", "nothing prepaid")
        if refusal is not None:
            self.counters.bump(self.counters.refusals, refusal.code)
            return refusal, []
        p = self.ports[port]
        float_s = self.rules.plan_float_s if auth.kind == "plan" else self.rules.float_s
        session = Session(
            id=self._new_id(),
            port=port,
            auth=auth,
            tariff=self.tariff,
            started_ms=now_ms,
            usage=Usage(now_ms),
            detector=ChargeEndDetector(self.rules, float_s),
            anomaly=AnomalyDetector(self.rules, now_ms),
            first_wh=p.meter.last_wh,
            last_wh=p.meter.last_wh,
            last_checkpoint_ms=now_ms,
        )
        p.session = session
        actions: list[Action] = []
        self._move(p, Trigger.AUTHORIZE, f"authorized by {auth.kind} {auth.ref}", now_ms, actions)
        actions.append(SessionOpened(session))
        self._command(p, "on", now_ms, actions)
        return session, actions

    def stop(
        self, port: int, reason: str, now_ms: int, *,
        session_id: str | None = None, auth_ref: str | None = None,
    ) -> tuple[Refusal | None, list[Action]]:  # fmt: skip
        """End the socket's session. With `session_id` or `auth_ref` (an order number,
        a card), only that session: a stop asked for one session, delivered late (the
        shed was offline), must not end the next resident's."""
        p = self.ports.get(port)
        if p is None or p.session is None or p.state not in SESSION_STATES:
            return Refusal("no_session", f"no running session on socket {port}"), []
        s = p.session
        if (session_id is not None and s.id != session_id) or (
            auth_ref is not None and s.auth.ref != auth_ref
        ):
            return Refusal("session_changed",
                           f"the session on socket {port} is not the one to stop"), []  # fmt: skip
        actions: list[Action] = []
        self._end(p, reason, now_ms, actions)
        return None, actions

    def disable(self, port: int, reason: str, now_ms: int) -> tuple[Refusal | None, list[Action]]:
        p = self.ports.get(port)
        if p is None:
            return Refusal("unknown_port", f"socket {port} does not exist"), []
        actions: list[Action] = []
        if p.state in SESSION_STATES:
            p.disable_pending = reason
            self._end(p, "disabled", now_ms, actions)
        elif p.state is S.FINISHING:
            p.disable_pending = reason
        elif self._move(p, Trigger.DISABLE, f"disabled: {reason}", now_ms, actions) is None:
            return Refusal("bad_state", f"socket {port} is {p.state.value}"), []
        else:
            p.disabled_reason = reason
        return None, actions

    def enable(self, port: int, now_ms: int) -> tuple[Refusal | None, list[Action]]:
        p = self.ports.get(port)
        actions: list[Action] = []
        if p is None or self._move(p, Trigger.ENABLE, "enabled", now_ms, actions) is None:
            return Refusal("bad_state", f"socket {port} is not disabled"), []
        p.disabled_reason = None
        return None, actions

    def clear_fault(self, port: int, now_ms: int) -> tuple[Refusal | None, list[Action]]:
        p = self.ports.get(port)
        actions: list[Action] = []
        if (
            p is None
            or self._move(p, Trigger.CLEAR_FAULT, "fault cleared", now_ms, actions) is None
        ):
            return Refusal("bad_state", f"socket {port} is not in fault"), []
        return None, actions

    def acknowledge(
        self, alarm_id: str, by: str, note: str, now_ms: int
    ) -> tuple[Refusal | None, list[Action]]:
        alarm = self.alarms.get(alarm_id)
        if alarm is None:
            return Refusal("unknown_alarm", f"no alarm {alarm_id}"), []
        if alarm.acked_ms is not None:
            return Refusal("already_acked", f"alarm {alarm_id} was acknowledged"), []
        alarm.acked_ms, alarm.acked_by, alarm.note = now_ms, by, note
        if not alarm.active:
            del self.alarms[alarm_id]
        return None, [AlarmChanged(alarm)]

    def undo_start(self, session_id: str, now_ms: int) -> list[Action]:
        """Take back a start the store could not record, before its relay-on went out.

        Only a session still waiting for its first load can be undone: nothing has
        flowed, nobody is billed, and the socket is free again."""
        for p in self.ports.values():
            s = p.session
            if s is None or s.id != session_id or p.state is not S.AUTHORIZED:
                continue
            for cmd_id in [k for k, c in self.pending.items() if c.session_id == session_id]:
                del self.pending[cmd_id]
            actions: list[Action] = []
            self._move(p, Trigger.UNDO_START, "start not stored", now_ms, actions)
            p.session, p.commanded_on, p.on_acked = None, False, False
            return actions
        return []

    def store_trouble(self, detail: str | None, now_ms: int) -> list[Action]:
        """Raise (detail given) or clear (None) the `store_failed` alarm."""
        current = [a for a in self.alarms.values() if a.kind == "store_failed" and a.active]
        if detail is None:
            return self._clear_alarms(lambda a: a in current, now_ms)
        if current:
            return []
        actions: list[Action] = []
        self._raise(Alarm(self._new_id(), "store_failed", now_ms, detail), actions)
        return actions

    def set_cards(self, cards: Iterable[Card]) -> None:
        self.cards = {c.uid: c for c in cards}

    def restore(self, sessions: Iterable[Session], alarms: Iterable[Alarm]) -> None:
        """After a restart: open sessions wait, offline, for their socket to report."""
        for s in sessions:
            p = self.ports.get(s.port)
            if p is None or p.session is not None:
                continue
            s.flags.add("restored")
            s.anomaly = AnomalyDetector(self.rules, s.started_ms, resumed=True)
            p.session = s
            p.commanded_on = s.stop_ms is None
        for a in alarms:
            self.alarms[a.id] = a

    # ---- device messages ---------------------------------------------------

    def handle(self, msg: DeviceMessage, now_ms: int) -> list[Action]:
        if isinstance(msg, Telemetry):
            return self._telemetry(msg, now_ms)
        if isinstance(msg, PortEvent):
            return self._event(msg, now_ms)
        if isinstance(msg, CmdAck):
            return self._ack(msg, now_ms)
        if isinstance(msg, BoardStatus):
            return self._board_status(msg, now_ms)
        if isinstance(msg, BayOccupancy):
            return self._bay(msg, now_ms)
        return self._env(msg, now_ms)

    def _telemetry(self, t: Telemetry, now_ms: int) -> list[Action]:
        p = self.ports.get(t.port)
        if p is None:
            self.counters.bump(self.counters.discarded, "unknown_port")
            return []
        reading = p.meter.feed(t.ts, t.seq, t.wh, now_ms)
        verdict = reading.verdict
        if verdict is not _ACCEPTED and verdict is not _FIRST:
            self.counters.bump(self.counters.discarded, verdict.value)
            return []
        self.counters.samples += 1
        actions: list[Action] = []
        if not self.board_online.get(p.board, False):
            self._board_up(p.board, now_ms, actions)
        self.board_seen[p.board] = now_ms
        p.w, p.relay, p.temp_c = t.w, t.relay, t.temp_c
        if reading.rebooted:
            self.counters.meter_reboots += 1
        if reading.implausible:
            self.counters.meter_jumps += 1
        s = p.session
        delta_wh = reading.delta_wh
        if s is not None and p.state is _OFFLINE:
            self._reconcile(p, t, now_ms, actions)
            s, delta_wh = p.session, 0  # the reconciliation accounted for the energy
        if self._safety(p, t, now_ms, actions):
            return actions
        if s is None:
            return actions
        s.last_wh = t.wh
        if s.first_wh is None:
            s.first_wh = t.wh
        if reading.implausible:
            s.flags.add("meter_jump")
        if reading.rebooted:
            s.flags.add("board_rebooted")
        s.energy_wh += delta_wh
        s.w = t.w
        if t.w > s.peak_w:  # cheaper than max() on the hot path
            s.peak_w = t.w
        s.usage.add(now_ms if s.stop_ms is None else s.stop_ms, t.w, delta_wh)
        if s.stop_ms is not None:
            if not t.relay:  # off is confirmed by the board's own report
                self._close(p, now_ms, actions)
            return actions
        if p.state not in SESSION_STATES:
            return actions
        detection = s.detector.feed(now_ms, t.w)
        if s.anomaly is not None:
            s.anomaly.feed(t.w)  # O(1); the checks run once a minute from the tick
        if detection is not None:
            trigger, reason = _DETECTED[detection]
            self._move(p, trigger, reason, now_ms, actions)
        if not t.relay and p.on_acked:  # the board switched off without telling why
            self._end(p, "relay_off", now_ms, actions)
            return actions
        # The prepaid limit is checked by the one-second tick, not per sample: the exact
        # tariff arithmetic is the costliest step of the hot path.
        if now_ms - p.last_publish_ms >= self._publish_every_ms:
            actions.append(self._state_of(p, now_ms))
        return actions

    def _safety(self, p: Port, t: Telemetry, now_ms: int, actions: list[Action]) -> bool:
        """Per-socket safety rules. True when the socket was tripped."""
        r = self.rules
        if t.w > self._overpower_w:
            p.over_w_since = p.over_w_since if p.over_w_since is not None else now_ms
            if now_ms - p.over_w_since >= r.overpower_hold_s * 1000:
                self._trip(p, "overpower", f"{t.w:.0f} W above {r.socket_max_w} W", now_ms, actions)
                return True
        else:
            p.over_w_since = None
        if t.temp_c is not None and t.temp_c > r.overtemp_c:
            p.over_t_since = p.over_t_since if p.over_t_since is not None else now_ms
            if now_ms - p.over_t_since >= r.overtemp_hold_s * 1000:
                self._trip(p, "overtemp", f"socket at {t.temp_c:.1f} °C", now_ms, actions)
                return True
        else:
            p.over_t_since = None
        if not p.commanded_on and t.w > r.relay_fault_w and p.state is not S.FAULT:
            p.fault_w_since = p.fault_w_since if p.fault_w_since is not None else now_ms
            if now_ms - p.fault_w_since >= r.relay_fault_hold_s * 1000:
                self._trip(p, "relay_fault", f"{t.w:.0f} W with relay off", now_ms, actions)
                return True
        else:
            p.fault_w_since = None
        return False

    def _event(self, e: PortEvent, now_ms: int) -> list[Action]:
        p = self.ports.get(e.port)
        if p is None:
            return []
        actions: list[Action] = []
        if e.type == "overcurrent":
            self._trip(p, "overpower", "board tripped on over-current", now_ms, actions)
        elif e.type == "overtemp":
            self._trip(p, "overtemp", "board tripped on over-temperature", now_ms, actions)
        elif e.type == "relay_fault":
            self._trip(p, "relay_fault", "board reported a relay fault", now_ms, actions)
        elif e.type == "lease_expired":
            # The board switched off by itself. The session closes on its next
            # reading with the relay off, which holds the final register (the event
            # comes before it), or by the timers if that reading never comes.
            if p.session is not None and p.state in SESSION_STATES:
                self._end(p, "lease_expired", now_ms, actions)
            p.commanded_on = False
        elif e.type == "button":
            if p.session is not None and p.state in SESSION_STATES:
                self._end(p, "button", now_ms, actions)
        elif e.type == "card" and e.card_uid is not None:
            self._card_tap(p, e.card_uid, now_ms, actions)
        return actions

    def _card_tap(self, p: Port, uid: str, now_ms: int, actions: list[Action]) -> None:
        card = self._find_card(uid)
        s = p.session
        if (
            s is not None
            and p.state in SESSION_STATES
            and s.auth.ref in (uid, getattr(card, "uid", None))
        ):
            self._end(p, "card_stop", now_ms, actions)  # the same card taps again: stop
            return
        if isinstance(card, str) or card.blocked:
            actions.append(CardRefused(uid, p.number, card if isinstance(card, str) else "blocked"))
            return
        if card.plan_valid(now_ms):
            auth = Authorization("plan", card.uid, None)
        elif card.balance_fen >= self.rules.card_min_balance_fen:
            auth = Authorization("card", card.uid, card.balance_fen)
        else:
            actions.append(CardRefused(uid, p.number, "insufficient_balance"))
            return
        result, more = self.authorize(p.number, auth, now_ms)
        if isinstance(result, Refusal):
            actions.append(CardRefused(uid, p.number, result.code))
        actions.extend(more)

    def _find_card(self, uid: str) -> Card | str:
        """The card with this uid, or why there is none. An RS-485 reader reports only
        the last 4 hex digits: such a short uid names the one card that ends with them."""
        card = self.cards.get(uid)
        if card is not None:
            return card
        if len(uid) == SHORT_UID_DIGITS:
            matches = [c for c in self.cards.values() if c.uid.endswith(uid)]
            if len(matches) == 1:
                return matches[0]
            if matches:
                return "ambiguous_card"
        return "unknown_card"

    def _ack(self, ack: CmdAck, now_ms: int) -> list[Action]:
        pending = self.pending.pop(ack.id, None)
        if pending is None:
            return []
        p = self.ports[pending.port]
        actions: list[Action] = []
        s = p.session
        same_session = s is not None and s.id == pending.session_id
        if pending.op == "off" and ack.ok and not ack.relay:
            # The session closes on the board's next reading with the relay off: that
            # reading holds the final register, energy up to the very switch-off.
            p.commanded_on = False
        elif ack.ok and pending.op == "on" and same_session:
            p.on_acked = ack.relay
        elif not ack.ok and pending.op == "on" and same_session and p.state in SESSION_STATES:
            assert s is not None
            s.flags.add("start_failed")
            self._end(p, "start_failed", now_ms, actions)
        elif not ack.ok and pending.op == "off":
            self._trip(p, "relay_fault", f"off not confirmed: {ack.error}", now_ms, actions)
        return actions

    def _board_status(self, b: BoardStatus, now_ms: int) -> list[Action]:
        if b.board not in self.board_online:
            return []
        actions: list[Action] = []
        if b.online:
            self.board_seen[b.board] = now_ms
            if not self.board_online[b.board]:
                self._board_up(b.board, now_ms, actions)
        elif self.board_online[b.board]:
            # Its link said so (an MQTT last will, or an RS-485 board that stopped answering).
            self._board_down(b.board, "board went offline", now_ms, actions)
        return actions

    def _bay(self, m: BayOccupancy, now_ms: int) -> list[Action]:
        bay = self.bays.get(m.bay)
        if bay is None:
            return []
        bay.last_seen_ms = now_ms
        if m.occupied == bay.occupied:
            return []
        bay.occupied, bay.since_ms, bay.alerted = m.occupied, now_ms, False
        actions: list[Action] = [BayChanged(bay.number, bay.occupied, now_ms)]
        if not m.occupied:
            actions += self._clear_alarms(
                lambda a: a.kind == "bay_idle" and a.bay == bay.number, now_ms
            )
        return actions

    def _env(self, m: EnvReading, now_ms: int) -> list[Action]:
        kind = ENV_ALARM_KIND[m.kind]
        existing = [a for a in self.alarms.values() if a.kind == kind and a.sensor == m.sensor]
        if not m.alarm:
            return self._clear_alarms(lambda a: a in existing and a.active, now_ms)
        actions: list[Action] = []
        if not any(a.active for a in existing):
            detail = f"{m.kind} alarm from {m.sensor} ({m.value})"
            self._raise(Alarm(self._new_id(), kind, now_ms, detail, sensor=m.sensor), actions)
        for p in self.ports.values():  # every relay off at once
            if p.state in SESSION_STATES:
                self._end(p, kind, now_ms, actions)
            elif p.commanded_on and p.state is not S.FINISHING:
                self._command(p, "off", now_ms, actions)
        return actions

    # ---- time --------------------------------------------------------------

    def tick(self, now_ms: int, link_up: bool = True) -> list[Action]:
        """Timers: leases, charge-end timers, caps, liveness, budget, bays.

        `link_up` False: the controller itself cannot hear the boards (its broker
        is away). No board is called silent then, and every board gets its
        offline rule anew from when the link is back."""
        r = self.rules
        actions: list[Action] = []
        silent_ms = r.heartbeat_s * r.offline_after_heartbeats * 1000
        self._link(link_up, silent_ms, now_ms, actions)
        for board, online in self.board_online.items():
            heard = max(self.board_seen.get(board, now_ms), self._listening_ms)
            if online and now_ms - heard > silent_ms:
                self._board_down(board, f"silent for {silent_ms // 1000} s", now_ms, actions)
        for p in self.ports.values():
            s = p.session
            if s is None:
                continue
            self._session_timers(p, s, now_ms, actions)
        self._budget(now_ms, actions)
        for bay in self.bays.values():
            self._bay_timer(bay, now_ms, actions)
        return actions

    def _session_timers(self, p: Port, s: Session, now_ms: int, actions: list[Action]) -> None:
        r = self.rules
        age_ms = now_ms - s.started_ms
        if p.state is S.OFFLINE or s.stop_ms is not None:
            # Waiting for a board that does not answer: once its lease has surely cut
            # the relay, the session closes on the last register read.
            if now_ms > self._relay_surely_off_ms(p, s) + r.heartbeat_s * 1000:
                if s.stop_ms is None:
                    self._end(p, "board_offline", now_ms, actions)
                s.flags.add("closed_without_board")
                self._close(p, now_ms, actions)
            return
        cap_s = r.hard_cap_s if s.auth.kind == "plan" else r.session_cap_s
        due = s.detector.due(now_ms)
        if p.state is S.AUTHORIZED and age_ms >= r.authorize_timeout_s * 1000:
            self._end(p, "no_load", now_ms, actions)
        elif age_ms >= r.hard_cap_s * 1000:
            self._end(p, "hard_cap", now_ms, actions)
        elif age_ms >= cap_s * 1000:
            self._end(p, "session_cap", now_ms, actions)
        elif due is Detection.UNPLUGGED:
            # A charger that falls silent during its float has finished: the battery is full.
            self._end(p, "full" if p.state is S.FLOATING else "unplugged", now_ms, actions)
        elif due is Detection.FLOAT_DONE:
            self._end(p, "full", now_ms, actions)
        elif self._money_used_up(s, now_ms):
            self._end(p, "money_used_up", now_ms, actions)
        elif now_ms - s.last_renew_ms >= r.renew_every_s * 1000:
            self._command(p, "renew", now_ms, actions)
        an = s.anomaly
        if an is not None and p.session is s and s.stop_ms is None and now_ms >= an.next_roll_ms:
            for found in an.roll(now_ms, p.temp_c, s.energy_wh):
                self._anomaly(p, s, found, now_ms, actions)
        if p.session is s and now_ms - s.last_checkpoint_ms >= CHECKPOINT_EVERY_MS:
            s.last_checkpoint_ms = now_ms
            actions.append(SessionCheckpoint(s))

    def _anomaly(
        self, p: Port, s: Session, found: Anomaly, now_ms: int, actions: list[Action]
    ) -> None:
        """A charge-curve anomaly: staff get an alarm (cleared when the session closes),
        the resident's session record a flag. The charge goes on: safety trips stop it."""
        s.flags.add(found.kind)
        alarm = Alarm(self._new_id(), found.kind, now_ms, found.detail, port=p.number)
        self._raise(alarm, actions)

    def _link(self, up: bool, silent_ms: int, now_ms: int, actions: list[Action]) -> None:
        """The controller's own link to its boards (the broker): while it is down
        no board is called silent, and down past the boards' offline rule it is an
        alarm of its own, `broker_unreachable`, cleared when the link is back."""
        if up:
            if self._link_down_since is not None:
                self._link_down_since = None
                actions.extend(self._clear_alarms(
                    lambda a: a.kind == "broker_unreachable" and a.active, now_ms))  # fmt: skip
            return
        self._listening_ms = now_ms
        if self._link_down_since is None:
            self._link_down_since = now_ms
            return
        down_ms = now_ms - self._link_down_since
        raised = any(a.kind == "broker_unreachable" and a.active for a in self.alarms.values())
        if down_ms > silent_ms and not raised:
            detail = f"the controller has not reached its broker for {down_ms // 1000} s"
            self._raise(Alarm(self._new_id(), "broker_unreachable", now_ms, detail), actions)

    def _relay_surely_off_ms(self, p: Port, s: Session) -> int:
        """When a silent board's lease has cut this session's relay, at the latest.

        While the controller runs, `lease_until_ms` is exact. A restored session's
        stored lease may be older than the board's (renewals are not written), so the
        lease is counted from the controller's own start, which no renewal can pass.
        A board is waited for until it has stayed silent past its offline rule,
        counted from when it was last heard, or from the start: a board that reports
        reconciles the session from its register instead."""
        r = self.rules
        until = s.lease_until_ms
        if "restored" in s.flags:
            until = max(until, self._started_ms + r.lease_s * 1000)
        if p.state is S.OFFLINE:
            # The socket is of no use to anyone while its board is away: its session
            # waits `offline_settle_s` for the board's register before settling on
            # the last reading.
            heard = max(self.board_seen.get(p.board, 0), self._listening_ms)
            silent_ms = r.heartbeat_s * r.offline_after_heartbeats * 1000
            until = max(until, heard + max(silent_ms, r.offline_settle_s * 1000))
        return until

    def _budget(self, now_ms: int, actions: list[Action]) -> None:
        r = self.rules
        if self.shed_power_w() <= r.budget_w:
            self._over_budget_since = None
            return
        if self._over_budget_since is None:
            self._over_budget_since = now_ms
            return
        if now_ms - self._over_budget_since < r.budget_hold_s * 1000:
            return
        running = [p for p in self.ports.values() if p.state in SESSION_STATES and p.session]
        if running:  # newest first, never the oldest
            newest = max(running, key=lambda p: p.session.started_ms if p.session else 0)
            self._end(newest, "over_budget", now_ms, actions)
        self._over_budget_since = now_ms  # give the meters time to show the drop

    def _bay_timer(self, bay: Bay, now_ms: int, actions: list[Action]) -> None:
        if not bay.occupied or bay.alerted:
            return
        port = self.ports.get(bay.port) if bay.port is not None else None
        charging = port is not None and port.state in SESSION_STATES
        if charging:
            bay.since_ms = now_ms  # the clock runs only while the bay is used without charging
            return
        if now_ms - bay.since_ms >= self.rules.bay_idle_alert_s * 1000:
            bay.alerted = True
            minutes = (now_ms - bay.since_ms) // 60_000
            detail = f"bay {bay.number} occupied {minutes} min without charging"
            self._raise(Alarm(self._new_id(), "bay_idle", now_ms, detail, bay=bay.number), actions)

    # ---- internals ---------------------------------------------------------

    def _move(
        self, p: Port, trigger: Trigger, reason: str, now_ms: int, actions: list[Action]
    ) -> SocketState | None:
        new = next_state(p.state, trigger)
        if new is None:
            return None
        p.state, p.since_ms = new, now_ms
        if p.session is not None:
            p.session.reasons.append((now_ms, new.value, reason))
        actions.append(self._state_of(p, now_ms))
        return new

    def _state_of(self, p: Port, now_ms: int) -> PublishState:
        s = p.session
        p.last_publish_ms = now_ms
        return PublishState(
            p.number, p.state.value, s.id if s else None, p.w, s.energy_wh if s else 0, p.since_ms
        )

    def _command(self, p: Port, op: CommandOp, now_ms: int, actions: list[Action]) -> None:
        cmd_id = self._new_id()
        s = p.session
        lease = self.rules.lease_s
        if op == "on":
            cmd = PortCommand(p.number, cmd_id, "on", lease, self.rules.socket_max_w)
        elif op == "renew":
            cmd = PortCommand(p.number, cmd_id, "renew", lease)
        else:
            cmd = PortCommand(p.number, cmd_id, "off")
        if op != "off" and s is not None:
            s.lease_until_ms = now_ms + lease * 1000
            s.last_renew_ms = now_ms
        p.commanded_on = op != "off"
        if op != "renew":
            p.on_acked = False
        self.pending[cmd_id] = PendingCommand(p.number, op, s.id if s else None)
        actions.append(SendCommand(cmd))

    def _money_used_up(self, s: Session, now_ms: int) -> bool:
        """True once the bill passes the prepaid amount.

        The exact bill is costly, so after each check the next one waits for the
        earliest moment the money could run out: the remaining fen at the highest
        rate a socket can cost (top tier, or dearest band at the trip power).
        """
        if s.auth.prepaid_fen is None or s.stop_ms is not None or now_ms < s.next_money_check_ms:
            return False
        cost = s.usage.cost_so_far_fen(s.tariff, now_ms)
        if cost > s.auth.prepaid_fen:
            return True
        per_minute = _max_fen_per_minute(s.tariff, self.rules)
        if per_minute > 0:
            safe_minutes = int((s.auth.prepaid_fen - cost) / per_minute) - 1
            s.next_money_check_ms = now_ms + max(1, safe_minutes * 60) * 1000
        return False

    def _end(self, p: Port, reason: str, now_ms: int, actions: list[Action]) -> None:
        """Stop a session: relay off now; it closes when the board confirms."""
        s = p.session
        if s is None:
            return
        if s.stop_ms is None:
            s.stop_ms, s.end_reason = now_ms, reason
            s.usage.extend_to(now_ms)
        if p.state in SESSION_STATES:
            self._move(p, Trigger.STOP, reason, now_ms, actions)
            self._command(p, "off", now_ms, actions)

    def _close(self, p: Port, now_ms: int, actions: list[Action]) -> None:
        s = p.session
        if s is None:
            return
        if s.stop_ms is None:
            s.stop_ms, s.end_reason = now_ms, s.end_reason or "closed"
        s.ended_ms = now_ms
        if (
            s.first_wh is not None
            and s.last_wh is not None
            and "meter_jump" not in s.flags
            and register_delta(s.first_wh, s.last_wh) != s.energy_wh
        ):
            s.flags.add("energy_mismatch")
        not_charged = None  # nothing flowed: nothing is owed (start fees included)
        if s.end_reason == "start_failed":
            not_charged = "start_failed"
        elif s.end_reason == "no_load" or s.energy_wh == 0:
            not_charged = "nothing_drawn"
        bill = closing_bill(s.tariff, s.usage, s.stop_ms, prepaid_fen=s.auth.prepaid_fen,
                            not_charged=not_charged)  # fmt: skip
        charged = bill.total_fen  # the receipt's lines add up to it
        if s.auth.prepaid_fen is not None:
            s.refund_fen = s.auth.prepaid_fen - charged if s.auth.kind == "order" else 0
        s.bill, s.charged_fen = bill, charged
        p.session = None
        p.w = 0.0 if p.state is S.OFFLINE else p.w
        actions.append(SessionClosed(s))
        if s.flags & _ANOMALY_FLAGS:
            actions.extend(self._clear_alarms(
                lambda a: a.port == p.number and a.kind in _ANOMALY_FLAGS, now_ms))  # fmt: skip
        if s.auth.kind == "card":
            card = self.cards.get(s.auth.ref)
            if card is not None:
                card.balance_fen -= charged
                actions.append(CardDebited(card.uid, charged, card.balance_fen, s.id))
        if p.state is S.FINISHING:
            self._move(p, Trigger.OFF_CONFIRMED, "off confirmed", now_ms, actions)
        if p.disable_pending is not None and p.state is S.IDLE:
            p.disabled_reason, p.disable_pending = p.disable_pending, None
            self._move(p, Trigger.DISABLE, f"disabled: {p.disabled_reason}", now_ms, actions)

    def _trip(self, p: Port, kind: str, detail: str, now_ms: int, actions: list[Action]) -> None:
        if p.state is S.FAULT:
            return
        had_session = p.session is not None and p.state in SESSION_STATES
        if had_session:
            self._end(p, kind, now_ms, actions)
        elif p.relay or p.commanded_on:
            self._command(p, "off", now_ms, actions)
        self._move(p, Trigger.TRIP, detail, now_ms, actions)
        self._raise(Alarm(self._new_id(), kind, now_ms, detail, port=p.number), actions)
        p.over_w_since = p.over_t_since = p.fault_w_since = None

    def _raise(self, alarm: Alarm, actions: list[Action]) -> None:
        self.alarms[alarm.id] = alarm
        actions.append(AlarmChanged(alarm))

    def _clear_alarms(self, match: Callable[[Alarm], bool], now_ms: int) -> list[Action]:
        actions: list[Action] = []
        for alarm in [a for a in self.alarms.values() if match(a)]:
            alarm.active, alarm.cleared_ms = False, now_ms
            if alarm.acked_ms is not None:
                del self.alarms[alarm.id]
            actions.append(AlarmChanged(alarm))
        return actions

    def _board_up(self, board: str, now_ms: int, actions: list[Action]) -> None:
        self.board_online[board] = True
        self.board_seen[board] = now_ms
        actions.extend(
            self._clear_alarms(lambda a: a.kind == "board_offline" and a.board == board, now_ms)
        )
        for p in self.ports.values():
            if p.board == board and p.state is S.OFFLINE and p.session is None:
                self._move(p, Trigger.BOARD_ONLINE, "board online", now_ms, actions)

    def _board_down(self, board: str, detail: str, now_ms: int, actions: list[Action]) -> None:
        self.board_online[board] = False
        for p in self.ports.values():
            if p.board == board:
                if p.session is not None:
                    p.session.flags.add("board_offline")
                p.w = 0.0
                self._move(p, Trigger.BOARD_OFFLINE, detail, now_ms, actions)
        alarm = Alarm(
            self._new_id(), "board_offline", now_ms, f"board {board}: {detail}", board=board
        )
        self._raise(alarm, actions)

    def _reconcile(self, p: Port, t: Telemetry, now_ms: int, actions: list[Action]) -> None:
        """An open session meets its socket again (restart, or board back online)."""
        s = p.session
        assert s is not None
        s.flags.discard("restored")
        if t.relay:
            self._catch_up(p, s, t, now_ms)
            self._move(p, Trigger.RESUME, "resumed after reconnect", now_ms, actions)
            s.detector.load_seen = True
            p.on_acked = True
            if s.stop_ms is None:
                self._command(p, "renew", now_ms, actions)
            else:  # it was being stopped when we lost it: stop it again
                self._move(p, Trigger.STOP, s.end_reason or "stopped", now_ms, actions)
                self._command(p, "off", now_ms, actions)
            return
        # The relay is off: the lease cut it while we were away (or the board
        # rebooted). Bill what the register shows flowed, then free the socket.
        if s.stop_ms is None:
            # Time is billed up to the lease's end, not the time we were away: a
            # restored session's stored lease is its last checkpoint's, never later
            # than the board's own.
            cut_ms = min(now_ms, s.lease_until_ms) if s.lease_until_ms > s.started_ms else now_ms
            cut_ms = max(cut_ms, s.usage.last_ms)
            s.stop_ms, s.end_reason = cut_ms, "interrupted"
            s.usage.extend_to(cut_ms)
        self._catch_up(p, s, t, now_ms)
        self._close(p, now_ms, actions)
        self._move(p, Trigger.BOARD_ONLINE, "board online", now_ms, actions)

    def _catch_up(self, p: Port, s: Session, t: Telemetry, now_ms: int) -> None:
        """Bill the register difference since the session's last stored reading."""
        if s.last_wh is None:
            s.first_wh = s.last_wh = t.wh
            return
        delta = register_delta(s.last_wh, t.wh)
        # The board's clock and ours may differ by minutes: the longer of the two
        # spans bounds what the socket could have drawn.
        elapsed_h = max(t.ts - s.started_ms, now_ms - s.started_ms, 1000) / 3_600_000
        if delta <= p.meter.max_w * 2 * elapsed_h + 2:
            s.energy_wh += delta
            s.usage.add(s.stop_ms or now_ms, 0.0, delta)
        else:
            s.flags.add("meter_jump")
        s.last_wh = t.wh


def _max_fen_per_minute(tariff: Tariff, rules: RuleConfig) -> float:
    """An upper bound of what one minute of a session can cost under `tariff`."""
    if tariff.kind == "power_tier":
        return max((float(t.fen_per_hour) for t in tariff.tiers), default=0.0) / 60 + 1
    max_kw = rules.socket_max_w * (1 + rules.overpower_tolerance) / 1000
    rate = max((float(b.fen_per_kwh) for b in tariff.bands), default=0.0)
    return (rate + float(tariff.service_fen_per_kwh)) * max_kw / 60 + 1
