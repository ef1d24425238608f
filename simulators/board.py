"""A pure model of one MQTT socket board (contract mqtt-device-v1), N ports.

No sockets, no clock reads: every call takes `now_ms` and returns the MQTT
messages the board would publish (`Outgoing`). Time only moves forward; a call
with an older `now_ms` is treated as "now".

What the firmware does, to the letter of the contract:
- relays with leases: `on`/`renew` set the lease deadline to now + `lease_s`;
  when it passes, the board switches the port off by itself and publishes
  `lease_expired`;
- `max_w`: power above it trips the port off after `trip_latency_s` and
  publishes `overcurrent`;
- every `cmd` gets exactly one `cmd/ack` with the same id; a repeated id (kept
  in a bounded per-port memory, lost on reboot like real RAM) is acknowledged
  again with the first answer and not executed again;
- a cumulative u32 `wh` register per port that wraps to 0, kept exact by a
  fractional accumulator: the register difference over any interval equals the
  true energy to within 1 Wh;
- per-port `seq` (u32) that restarts at 0 on reboot;
- telemetry every `interval_on_s` while the relay is on and every
  `interval_off_s` while off, plus one sample at once when a relay changes;
- card taps and stop buttons as events; `overtemp` when a socket passes
  `overtemp_c`; `relay_fault` when a relay is welded or open (fault injection).

Physics is integrated in steps of at most `physics_step_s` (1 s) while a port
carries load; idle stretches are skipped in one jump.
"""

from __future__ import annotations

import json
import math
import random
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from simulators.ebike import EBike
from simulators.wire import QOS_RELIABLE, QOS_TELEMETRY, U32, Outgoing, check_id, encode, topic

RelayFault = Literal["welded", "open"]

MAX_LEASE_S = 86_400
_TEMP_TAU_S = 900.0  # thermal time constant of a socket
_RELAY_FAULT_DETECT_MS = 3_000  # the fault must persist this long before it is reported
_OVERTEMP_HYSTERESIS_C = 5.0
_FLOW_THRESHOLD_W = 1.0  # what the board's meter counts as "power flows"


@dataclass(slots=True)
class PlugRecord:
    """Ground truth of one plug-in: which bike, when, and the energy it took here."""

    port: int
    bike: EBike
    plugged_ms: int
    unplugged_ms: int | None = None
    delivered_wh: float = 0.0


@dataclass(slots=True)
class _Port:
    number: int
    topic: str  # ebs/v1/{shed}/port/{number}, the prefix of the port's topics
    register_base: int  # register = (register_base + floor(meter_acc_wh)) mod 2^32
    temp_k: float  # socket heating, degrees C per W
    relay: bool = False  # the relay as commanded by the firmware
    lease_ms: int | None = None
    max_w: float = 1100.0
    bike: EBike | None = None
    plug: PlugRecord | None = None
    history: list[PlugRecord] = field(default_factory=list)
    meter_acc_wh: float = 0.0
    true_wh: float = 0.0
    meter_frozen: bool = False
    seq: int = 0
    next_tele_ms: int = 0
    last_w: float = 0.0  # power that flowed in the latest physics step
    temp_c: float = 25.0
    temp_ms: int = 0
    forced_temp_c: float | None = None
    overtemp_latched: bool = False
    relay_fault: RelayFault | None = None
    fault_since_ms: int | None = None
    fault_reported: bool = False
    acks: OrderedDict[str, bytes] = field(default_factory=OrderedDict)

    def register(self) -> int:
        return (self.register_base + math.floor(self.meter_acc_wh)) % U32


class SimBoard:
    """One socket board carrying `ports` (shed-wide socket numbers)."""

    def __init__(
        self,
        shed: str,
        board_id: str,
        ports: Iterable[int],
        *,
        rng: random.Random,
        start_ms: int,
        fw: str = "1.4.2",
        interval_on_s: float = 2.0,
        interval_off_s: float = 30.0,
        wh_start: int | Mapping[int, int] = 0,
        mains_v: float | None = None,
        ambient_c: float = 25.0,
        default_max_w: float = 1100.0,
        overtemp_c: float = 65.0,
        overtemp_trips: bool = False,
        trip_latency_s: float = 0.1,
        physics_step_s: float = 1.0,
        dedupe_size: int = 64,
        telemetry_on_change: bool = True,
    ) -> None:
        self.shed = check_id("shed", shed)
        self.board_id = check_id("board", board_id)
        numbers = tuple(ports)
        if not numbers or len(set(numbers)) != len(numbers):
            raise ValueError("ports must be a non-empty list of distinct numbers")
        if any(not 1 <= n <= 999 for n in numbers):
            raise ValueError("port numbers must be in 1..999")
        if not 0 < interval_on_s <= 10:
            raise ValueError("interval_on_s must be in (0, 10] (contract: at least every 10 s)")
        if not 0 < interval_off_s <= 60:
            raise ValueError("interval_off_s must be in (0, 60] (contract: at least every 60 s)")
        if not 0 < physics_step_s <= 1:
            raise ValueError("physics_step_s must be in (0, 1]")
        if dedupe_size < 1:
            raise ValueError("dedupe_size must be at least 1")
        self.fw = fw
        self.ports: tuple[int, ...] = numbers
        self.interval_on_ms = round(interval_on_s * 1000)
        self.interval_off_ms = round(interval_off_s * 1000)
        self.ambient_c = ambient_c
        self.default_max_w = default_max_w
        self.overtemp_c = overtemp_c
        self.overtemp_trips = overtemp_trips
        self.telemetry_on_change = telemetry_on_change
        self.telemetry_loss = 0.0  # fault injection: probability a sample is lost
        self.clock_offset_ms = 0  # fault injection: device clock minus true time
        self._trip_latency_ms = max(1, round(trip_latency_s * 1000))
        self._step_ms = max(1, round(physics_step_s * 1000))
        self._dedupe_size = dedupe_size
        self._rng = random.Random(rng.getrandbits(64))
        self._mains_v = self._rng.uniform(222.0, 233.0) if mains_v is None else mains_v
        self._v_wander = 0.0
        self._t = start_ms
        self.powered = True
        self.boots = 1
        self.commands_executed = 0
        self.duplicate_commands = 0
        self.bad_commands = 0
        self._ports: dict[int, _Port] = {}
        for n in numbers:
            start = wh_start.get(n, 0) if isinstance(wh_start, Mapping) else wh_start
            if not 0 <= start < U32:
                raise ValueError("wh_start must be a u32")
            self._ports[n] = _Port(
                number=n,
                topic=topic(self.shed, "port", n),
                register_base=start,
                temp_k=self._rng.uniform(0.008, 0.015),
                max_w=default_max_w,
                next_tele_ms=start_ms,  # first sample at power-on
                temp_c=ambient_c,
                temp_ms=start_ms,
            )
        self._plugged_bikes: set[int] = set()
        self._next_wake = start_ms

    # ----------------------------------------------------------------- messages

    @property
    def status_topic(self) -> str:
        return topic(self.shed, "board", self.board_id, "status")

    @property
    def now_ms(self) -> int:
        """The board's simulated time (latest `now_ms` it was given)."""
        return self._t

    def status_message(self, online: bool = True) -> Outgoing:
        """The retained board status; offline is `{"online": false}` like the will."""
        if not online:
            return self.last_will()
        payload = {
            "online": True,
            "fw": self.fw,
            "ports": list(self.ports),
            "ts": self._ts(self._t),
        }
        return Outgoing(self.status_topic, encode(payload), QOS_RELIABLE, True)

    def last_will(self) -> Outgoing:
        return Outgoing(self.status_topic, encode({"online": False}), QOS_RELIABLE, True)

    def cmd_topics(self) -> list[str]:
        return [topic(self.shed, "port", n, "cmd") for n in self.ports]

    # --------------------------------------------------------------- time

    def tick(self, now_ms: int) -> list[Outgoing]:
        """Advance physics to `now_ms`; return telemetry and events that fell due."""
        out: list[Outgoing] = []
        self._run_until(now_ms, out)
        return out

    def _run_until(self, now_ms: int, out: list[Outgoing]) -> None:
        while True:
            if self.powered and self._next_wake <= self._t:
                self._process_due(self._t, out)
            if self._t >= now_ms:
                return
            t0 = self._t
            if not self.powered:
                self._t = now_ms
                continue
            busy = [p for p in self._ports.values() if self._needs_steps(p)]
            horizon = min(now_ms, self._next_wake)
            t1 = min(horizon, t0 + self._step_ms) if busy else horizon
            for p in busy:
                self._physics(p, t0, t1, out)
            self._t = t1
            for p in busy:
                self._check_port(p, t0, t1, out)

    def _needs_steps(self, p: _Port) -> bool:
        if p.forced_temp_c is not None:
            return True
        if p.bike is None:
            return False
        return p.relay or p.relay_fault is not None

    def _flowing(self, p: _Port) -> bool:
        if not self.powered or p.bike is None:
            return False
        if p.relay_fault == "welded":
            return True
        return p.relay and p.relay_fault != "open"

    def _physics(self, p: _Port, t0: int, t1: int, out: list[Outgoing]) -> None:
        self._update_temp(p, t0, p.last_w)
        bike = p.bike
        if bike is None or not self._flowing(p):
            p.last_w = 0.0
            self._update_temp(p, t1, 0.0)
            return
        w = bike.power_w()
        if p.relay and w > p.max_w:
            t_trip = min(t1, t0 + self._trip_latency_ms)
            self._account(p, bike.step((t_trip - t0) / 1000.0, True))
            p.last_w = w
            self._update_temp(p, t_trip, w)
            self._switch_off(p, t_trip, "overcurrent", out)
            t0 = t_trip
            if not self._flowing(p):  # a welded relay keeps the power on
                p.last_w = 0.0
                return
            w = bike.power_w()
        self._account(p, bike.step((t1 - t0) / 1000.0, True))
        p.last_w = w
        self._update_temp(p, t1, w)

    def _account(self, p: _Port, energy_wh: float) -> None:
        p.true_wh += energy_wh
        if not p.meter_frozen:
            p.meter_acc_wh += energy_wh
        if p.plug is not None:
            p.plug.delivered_wh += energy_wh

    def _update_temp(self, p: _Port, t: int, w: float) -> None:
        if t <= p.temp_ms:
            return
        target = self.ambient_c + p.temp_k * w
        decay = math.exp(-(t - p.temp_ms) / 1000.0 / _TEMP_TAU_S)
        p.temp_c = target + (p.temp_c - target) * decay
        p.temp_ms = t

    def _measured_temp(self, p: _Port) -> float:
        return p.temp_c if p.forced_temp_c is None else p.forced_temp_c

    def _check_port(self, p: _Port, t0: int, t: int, out: list[Outgoing]) -> None:
        """Checks at the end of a physics step [t0, t]."""
        temp = self._measured_temp(p)
        if not p.overtemp_latched and temp > self.overtemp_c:
            p.overtemp_latched = True
            out.append(self._event(p, t, "overtemp"))
            if self.overtemp_trips and p.relay:
                self._switch_off(p, t, None, out)
        elif p.overtemp_latched and temp < self.overtemp_c - _OVERTEMP_HYSTERESIS_C:
            p.overtemp_latched = False
        if p.relay_fault is None:
            return
        if p.relay_fault == "welded":
            faulty = not p.relay and p.last_w > _FLOW_THRESHOLD_W
        else:
            faulty = p.relay and p.bike is not None
        if not faulty:
            p.fault_since_ms = None
            p.fault_reported = False
            return
        if p.fault_since_ms is None:
            p.fault_since_ms = t0  # the condition held over the whole step
        if not p.fault_reported and t - p.fault_since_ms >= _RELAY_FAULT_DETECT_MS:
            p.fault_reported = True
            out.append(self._event(p, t, "relay_fault"))

    def _process_due(self, t: int, out: list[Outgoing]) -> None:
        for p in self._ports.values():
            if p.relay and p.lease_ms is not None and p.lease_ms <= t:
                self._switch_off(p, p.lease_ms, "lease_expired", out)
            if p.next_tele_ms <= t:
                self._telemetry(p, t, out)
        self._recompute_wake()

    def _recompute_wake(self) -> None:
        wake = min(p.next_tele_ms for p in self._ports.values())
        for p in self._ports.values():
            if p.relay and p.lease_ms is not None:
                wake = min(wake, p.lease_ms)
        self._next_wake = wake

    def _switch_off(self, p: _Port, t: int, event: str | None, out: list[Outgoing]) -> None:
        p.relay = False
        p.lease_ms = None
        if event is not None:
            out.append(self._event(p, t, event))
        self._relay_changed(p, t, out)

    def _relay_changed(self, p: _Port, t: int, out: list[Outgoing]) -> None:
        self._update_temp(p, t, p.last_w)
        if not self._flowing(p):
            p.last_w = 0.0
        if self.telemetry_on_change:
            self._telemetry(p, t, out)
        else:
            interval = self.interval_on_ms if p.relay else self.interval_off_ms
            p.next_tele_ms = min(p.next_tele_ms, t + interval)
        self._recompute_wake()

    # --------------------------------------------------------------- payloads

    def _ts(self, t: int) -> int:
        return max(0, t + self.clock_offset_ms)

    def _event(self, p: _Port, t: int, kind: str, **extra: Any) -> Outgoing:
        payload: dict[str, Any] = {"ts": self._ts(t), "type": kind, **extra}
        return Outgoing(p.topic + "/event", encode(payload), QOS_RELIABLE, False)

    def _present_w(self, p: _Port) -> float:
        return p.bike.power_w() if p.bike is not None and self._flowing(p) else 0.0

    def _telemetry(self, p: _Port, t: int, out: list[Outgoing]) -> None:
        self._update_temp(p, t, p.last_w)
        seq = p.seq
        p.seq = (p.seq + 1) % U32
        p.next_tele_ms = t + (self.interval_on_ms if p.relay else self.interval_off_ms)
        rng = self._rng
        self._v_wander = max(-3.0, min(3.0, self._v_wander + rng.gauss(0.0, 0.05)))
        w = self._present_w(p)
        pf = p.bike.power_factor if p.bike is not None else 1.0
        v = self._mains_v + self._v_wander + rng.gauss(0.0, 0.2)
        a = w / (v * pf)
        v -= 0.4 * a  # drop on the supply cable
        temp = self._measured_temp(p)
        if p.forced_temp_c is None:
            temp += rng.gauss(0.0, 0.1)
        if self.telemetry_loss > 0.0 and rng.random() < self.telemetry_loss:
            return
        # The hottest path of a large simulation: formatted directly. Same bytes
        # as `encode()` (floats use repr, as json does; all values are finite).
        payload = (
            f'{{"ts":{self._ts(t)},"seq":{seq},"v":{round(v, 1)!r},"a":{round(a, 3)!r},'
            f'"w":{round(w, 1)!r},"wh":{p.register()},"relay":{"true" if p.relay else "false"},'
            f'"temp_c":{round(temp, 1)!r}}}'
        )
        out.append(Outgoing(p.topic + "/telemetry", payload.encode(), QOS_TELEMETRY, False))

    # --------------------------------------------------------------- commands

    def handle(self, target: int | str, payload: bytes, now_ms: int) -> list[Outgoing]:
        """Feed one `cmd` (target: port number, full topic or `port/N/cmd`)."""
        out = self.tick(now_ms)
        now = self._t
        port = _port_of(target)
        if not self.powered or port not in self._ports:
            return out
        p = self._ports[port]
        try:
            cmd = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            cmd = None
        cmd_id = cmd.get("id") if isinstance(cmd, dict) else None
        if not isinstance(cmd, dict) or not isinstance(cmd_id, str) or not cmd_id:
            self.bad_commands += 1  # nothing to acknowledge without an id
            return out
        ack_topic = p.topic + "/cmd/ack"
        known = p.acks.get(cmd_id)
        if known is not None:
            self.duplicate_commands += 1
            p.acks.move_to_end(cmd_id)
            out.append(Outgoing(ack_topic, known, QOS_RELIABLE, False))
            return out
        was_on = p.relay
        error = self._execute(p, cmd, now)
        ack = encode({"id": cmd_id, "ok": error is None, "relay": p.relay, "error": error})
        p.acks[cmd_id] = ack
        while len(p.acks) > self._dedupe_size:
            p.acks.popitem(last=False)
        self.commands_executed += 1
        out.append(Outgoing(ack_topic, ack, QOS_RELIABLE, False))
        if p.relay != was_on:
            self._relay_changed(p, now, out)
        else:
            self._recompute_wake()
        return out

    def _execute(self, p: _Port, cmd: dict[str, Any], now: int) -> str | None:
        op = cmd.get("op")
        if op == "off":
            p.relay = False
            p.lease_ms = None
            return None
        if op not in ("on", "renew"):
            return "bad_op"
        lease_s = _number(cmd.get("lease_s"))
        if lease_s is None or not 0 < lease_s <= MAX_LEASE_S:
            return "bad_lease"
        if op == "renew":
            if not p.relay:
                return "relay_off"
            p.lease_ms = now + round(lease_s * 1000)
            return None
        max_w = _number(cmd.get("max_w", self.default_max_w))
        if max_w is None or max_w <= 0:
            return "bad_max_w"
        if self.overtemp_trips and p.overtemp_latched:
            return "overtemp"
        p.relay = True
        p.lease_ms = now + round(lease_s * 1000)
        p.max_w = max_w
        return None

    # --------------------------------------------------------------- local actions

    def plug(self, port: int, bike: EBike, now_ms: int) -> list[Outgoing]:
        """Plug `bike` into `port` at `now_ms` (load present from then on)."""
        out = self.tick(now_ms)
        p = self._port(port)
        if p.bike is not None:
            raise ValueError(f"port {port} already has a bike plugged in")
        if id(bike) in self._plugged_bikes:
            raise ValueError("this bike is plugged into another port")
        record = PlugRecord(port=port, bike=bike, plugged_ms=self._t)
        p.bike = bike
        p.plug = record
        p.history.append(record)
        self._plugged_bikes.add(id(bike))
        return out

    def unplug(self, port: int, now_ms: int) -> list[Outgoing]:
        """Take the bike out of `port` at `now_ms`; the relay stays as it is."""
        out = self.tick(now_ms)
        p = self._port(port)
        if p.bike is not None:
            self._plugged_bikes.discard(id(p.bike))
        if p.plug is not None:
            p.plug.unplugged_ms = self._t
        self._update_temp(p, self._t, p.last_w)
        p.bike = None
        p.plug = None
        p.last_w = 0.0
        return out

    def tap_card(self, port: int, card_uid: str, now_ms: int) -> list[Outgoing]:
        """An IC card tapped on `port`'s reader: a `card` event (4-20 hex digits)."""
        uid = card_uid.upper()
        if not 4 <= len(uid) <= 20 or any(c not in "0123456789ABCDEF" for c in uid):
            raise ValueError("card_uid must be 4-20 hex digits")
        out = self.tick(now_ms)
        if self.powered:
            out.append(self._event(self._port(port), self._t, "card", card_uid=uid))
        return out

    def press_stop(self, port: int, now_ms: int) -> list[Outgoing]:
        """The local stop button of `port`: a `button` event (the controller decides)."""
        out = self.tick(now_ms)
        if self.powered:
            out.append(self._event(self._port(port), self._t, "button", action="stop"))
        return out

    # --------------------------------------------------------------- power

    def reboot(self, now_ms: int) -> list[Outgoing]:
        """Firmware restart: relays off, leases and command memory cleared, seq 0.

        Meter registers persist (non-volatile). Returns the status message and a
        fresh telemetry sample of every port.
        """
        out = self.tick(now_ms)
        if not self.powered:
            return out
        self._boot(out)
        return out

    def power_cut(self, now_ms: int) -> list[Outgoing]:
        """The board and its sockets lose mains: nothing flows, nothing is sent."""
        out = self.tick(now_ms)
        self.powered = False
        for p in self._ports.values():
            self._update_temp(p, self._t, p.last_w)
            p.relay = False
            p.lease_ms = None
            p.last_w = 0.0
        return out

    def power_restore(self, now_ms: int) -> list[Outgoing]:
        """Mains back: the board boots (status message, then a sample per port)."""
        out = self.tick(now_ms)
        if self.powered:
            return out
        self.powered = True
        self._boot(out)
        return out

    def _boot(self, out: list[Outgoing]) -> None:
        self.boots += 1
        t = self._t
        for p in self._ports.values():
            self._update_temp(p, t, p.last_w)
            p.relay = False
            p.lease_ms = None
            p.last_w = 0.0
            p.seq = 0
            p.acks.clear()
            p.overtemp_latched = False
            p.fault_since_ms = None
            p.fault_reported = False
            p.next_tele_ms = t
        out.append(self.status_message(True))
        self._process_due(t, out)

    # --------------------------------------------------------------- fault injection

    def set_relay_fault(self, port: int, fault: RelayFault | None) -> None:
        """`welded`: power flows while commanded off; `open`: none flows while on."""
        p = self._port(port)
        p.relay_fault = fault
        p.fault_since_ms = None
        p.fault_reported = False

    def force_temp(self, port: int, temp_c: float | None) -> None:
        """Force the socket temperature reading (None: back to the thermal model)."""
        self._port(port).forced_temp_c = temp_c

    def freeze_meter(self, port: int, frozen: bool = True) -> None:
        """A stuck meter: the register stops while energy still flows."""
        self._port(port).meter_frozen = frozen

    def set_register(self, port: int, value: int) -> None:
        """Overwrite the register (a meter reset or replacement), fraction kept."""
        if not 0 <= value < U32:
            raise ValueError("register must be a u32")
        p = self._port(port)
        p.register_base = (value - math.floor(p.meter_acc_wh)) % U32

    # --------------------------------------------------------------- inspection

    def relay(self, port: int) -> bool:
        return self._port(port).relay

    def lease_deadline_ms(self, port: int) -> int | None:
        return self._port(port).lease_ms

    def register(self, port: int) -> int:
        return self._port(port).register()

    def true_wh(self, port: int) -> float:
        """Ground truth: every Wh that flowed through `port` since the board was made."""
        return self._port(port).true_wh

    def power_w(self, port: int) -> float:
        return self._present_w(self._port(port))

    def temp_c(self, port: int) -> float:
        return self._measured_temp(self._port(port))

    def seq(self, port: int) -> int:
        """The `seq` the next telemetry sample of `port` will carry."""
        return self._port(port).seq

    def bike(self, port: int) -> EBike | None:
        return self._port(port).bike

    def plug_record(self, port: int) -> PlugRecord | None:
        """The current plug-in of `port`, or the last one if it is empty now."""
        p = self._port(port)
        return p.history[-1] if p.history else None

    def plug_history(self, port: int) -> list[PlugRecord]:
        return list(self._port(port).history)

    def _port(self, port: int) -> _Port:
        try:
            return self._ports[port]
        except KeyError:
            raise ValueError(f"port {port} is not on board {self.board_id}") from None


def _number(value: object) -> float | None:
    """A JSON number as float; None for anything else (bools are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _port_of(target: int | str) -> int | None:
    if isinstance(target, int):
        return target
    parts = target.split("/")
    try:
        i = parts.index("port")
        return int(parts[i + 1])
    except (ValueError, IndexError):
        return None
