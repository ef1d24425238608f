"""A pure model of one RS-485 socket board (contract modbus-rtu-board-v1), N sockets.

The register map over the same port model as the MQTT board: a `SimBoard`
(relays, leases, `max_w` trips, meters that track true energy within 1 Wh,
e-bikes from `simulators.ebike`) does the physics; this class is the
firmware's Modbus face. No I/O, no clock reads: every call takes `now_ms`.
`simulators.modbus_bus` puts boards on a simulated wire.

Written from the contract, not from the bridge (`firmware_bridge.modbus_*`):
the two share no code, so they cannot agree on a wrong reading of it.

Sockets are 0-based `k` as in the registers; the inner `SimBoard` numbers
them `k + 1` (reach it as `board.model` for its fault injection:
`set_relay_fault`, `force_temp`, `freeze_meter`, `set_register`, all with
port `k + 1`).

Firmware behaviour chosen where the contract leaves room:
- trip bits (overcurrent, overtemp, relay fault, lease expired) latch until
  the next successful `on` of that socket, or a reboot;
- writing 1 to the command register switches on with the lease and max-power
  registers as they are; a lease of 0 is refused (exception 03), so is a
  command other than 0 or 1; an `on` refused by the port model (e.g. a socket
  too hot when `overtemp_trips`) answers exception 04;
- in one FC 16 write the lease and max-power registers are applied before the
  command register, whatever their order;
- the card register holds the low word of the last UID tapped until the
  master writes 0 to it (the only value it accepts);
- register 3000 (slave id) takes effect at the next reboot.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from simulators.board import SimBoard
from simulators.ebike import EBike
from simulators.wire import Outgoing

ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3
DEVICE_FAILURE = 4

_MAP_VERSION = 1
_SOCKETS_AT = 1000
_HOLDING_AT = 2000
_SLAVE_ID_AT = 3000
_BIT_RELAY, _BIT_LOAD = 0x01, 0x02
_TRIP_BITS = {"overcurrent": 0x04, "overtemp": 0x08, "relay_fault": 0x10, "lease_expired": 0x20}


@dataclass(slots=True)
class _Socket:
    lease_s: int = 0  # holding 2000 + 4k + 1
    max_w: int = 1100  # holding 2000 + 4k + 2
    card: int = 0  # holding 2000 + 4k + 3
    trips: int = 0  # latched trip bits
    v: float = 230.0  # the meter's latest voltage reading
    forced_v: float | None = None
    forced_a: float | None = None
    forced_w: float | None = None


def _u16(value: int) -> int:
    """A signed or unsigned number as a register (two's complement), saturated."""
    return max(-0x8000, min(0xFFFF, value)) & 0xFFFF


class ModbusSimBoard:
    """One board at slave id `slave` with `sockets` sockets (1..16)."""

    def __init__(
        self,
        slave: int,
        sockets: int = 12,
        *,
        rng: random.Random,
        start_ms: int,
        fw: int = 104,
        board_temp_c: float = 31.2,
        **model_kw: Any,
    ) -> None:
        if not 1 <= slave <= 247:
            raise ValueError("slave id must be in 1..247")
        if not 1 <= sockets <= 16:
            raise ValueError("a board has 1..16 sockets")
        self.slave = slave
        self.n = sockets
        self.fw = fw
        self.board_temp_c = board_temp_c
        self.model = SimBoard(
            "rs485", f"slave-{slave}", range(1, sockets + 1), rng=rng, start_ms=start_ms, **model_kw
        )
        self._default_max_w = round(self.model.default_max_w)
        self._sockets = [_Socket(max_w=self._default_max_w) for _ in range(sockets)]
        self._next_slave = slave
        self._boot_ms = start_ms
        self._cmd_no = 0
        self.writes = 0  # register writes executed (fault tests count them)
        self._absorb(self.model.tick(start_ms))

    # ------------------------------------------------------------------ time

    def tick(self, now_ms: int) -> None:
        """Advance the physics (leases, trips, energy) to `now_ms`."""
        self._absorb(self.model.tick(now_ms))

    def _absorb(self, out: Iterable[Outgoing]) -> None:
        """Latch the port model's events as status bits; keep its voltage readings."""
        for o in out:
            parts = o.topic.split("/")
            if len(parts) < 6 or parts[3] != "port":
                continue
            s = self._sockets[int(parts[4]) - 1]
            if parts[5] == "event":
                bit = _TRIP_BITS.get(o.json()["type"], 0)
                s.trips |= bit
            elif parts[5] == "telemetry":
                s.v = float(o.json()["v"])

    # ------------------------------------------------------------------ Modbus functions

    def read_input(self, address: int, count: int, now_ms: int) -> list[int] | int:
        """FC 04: the registers, or an exception code."""
        self.tick(now_ms)
        regs = self._input_map(now_ms)
        return _slice(regs, address, count)

    def read_holding(self, address: int, count: int, now_ms: int) -> list[int] | int:
        """FC 03: the registers, or an exception code."""
        self.tick(now_ms)
        return _slice(self._holding_map(), address, count)

    def write(self, address: int, values: Sequence[int], now_ms: int) -> int | None:
        """FC 06 (one value) or FC 16: None when done, else an exception code; all or nothing."""
        self.tick(now_ms)
        holding = self._holding_map()
        writes = [(address + i, v) for i, v in enumerate(values)]
        for addr, value in writes:
            if addr not in holding:
                return ILLEGAL_ADDRESS
            if not self._valid(addr, value):
                return ILLEGAL_VALUE
        commands: list[tuple[int, int]] = []
        renews: set[int] = set()
        for addr, value in writes:
            if addr == _SLAVE_ID_AT:
                self._next_slave = value
                continue
            k, reg = divmod(addr - _HOLDING_AT, 4)
            s = self._sockets[k]
            if reg == 0:
                commands.append((k, value))
            elif reg == 1:
                s.lease_s = value
                renews.add(k)
            elif reg == 2:
                s.max_w = value
            else:
                s.card = 0
        commanded = {k for k, _ in commands}
        for k in sorted(renews - commanded):
            if self.model.relay(k + 1):
                self._command(k, {"op": "renew", "lease_s": self._sockets[k].lease_s}, now_ms)
        for k, value in commands:
            if value == 1:
                s = self._sockets[k]
                error = self._command(
                    k, {"op": "on", "lease_s": s.lease_s, "max_w": s.max_w}, now_ms
                )
                if error is not None:
                    return ILLEGAL_VALUE if error.startswith("bad_") else DEVICE_FAILURE
                s.trips = 0
            else:
                self._command(k, {"op": "off"}, now_ms)
        self.writes += len(writes)
        return None

    def _valid(self, addr: int, value: int) -> bool:
        if addr == _SLAVE_ID_AT:
            return 1 <= value <= 247
        reg = (addr - _HOLDING_AT) % 4
        if reg == 0:
            return value in (0, 1)
        if reg in (1, 2):
            return value >= 1
        return value == 0  # the card register: the master clears it

    def _command(self, k: int, body: dict[str, Any], now_ms: int) -> str | None:
        self._cmd_no += 1
        payload = json.dumps({"id": f"modbus-{self._cmd_no}", **body}).encode()
        out = self.model.handle(k + 1, payload, now_ms)
        self._absorb(out)
        for o in out:
            if o.topic.endswith("/cmd/ack"):
                error = o.json()["error"]
                return None if error is None else str(error)
        return "no_ack"

    # ------------------------------------------------------------------ register images

    def _input_map(self, now_ms: int) -> dict[int, int]:
        uptime = max(0, now_ms - self._boot_ms) // 1000
        regs = {
            0: _MAP_VERSION,
            1: self.n,
            2: self.fw,
            3: _u16(round(self.board_temp_c * 10)),
            4: (uptime >> 16) & 0xFFFF,
            5: uptime & 0xFFFF,
        }
        for k in range(self.n):
            for i, value in enumerate(self.socket_registers(k, now_ms)):
                regs[_SOCKETS_AT + 8 * k + i] = value
        return regs

    def _holding_map(self) -> dict[int, int]:
        regs = {_SLAVE_ID_AT: self._next_slave}
        for k, s in enumerate(self._sockets):
            base = _HOLDING_AT + 4 * k
            regs[base] = 1 if self.model.relay(k + 1) else 0
            regs[base + 1] = s.lease_s
            regs[base + 2] = s.max_w
            regs[base + 3] = s.card
        return regs

    def socket_registers(self, k: int, now_ms: int) -> list[int]:
        """The 8 input registers of socket k, as the firmware would fill them at `now_ms`."""
        s = self._sockets[k]
        port = k + 1
        model = self.model
        relay = model.relay(port)
        bike = model.bike(port)
        status = s.trips | (_BIT_RELAY if relay else 0) | (_BIT_LOAD if bike is not None else 0)
        w = model.power_w(port) if s.forced_w is None else s.forced_w
        v = s.v if s.forced_v is None else s.forced_v
        if s.forced_a is not None:
            a = s.forced_a
        else:
            pf = bike.power_factor if bike is not None else 1.0
            a = w / (v * pf) if v > 0 else 0.0
        wh = model.register(port)
        lease = model.lease_deadline_ms(port)
        lease_left = math.ceil((lease - now_ms) / 1000) if relay and lease is not None else 0
        return [
            status,
            _u16(round(v * 10)),
            _u16(round(a * 100)),
            _u16(round(w * 10)),
            (wh >> 16) & 0xFFFF,
            wh & 0xFFFF,
            _u16(round(model.temp_c(port) * 10)),
            _u16(max(0, lease_left)),
        ]

    # ------------------------------------------------------------------ local actions

    def plug(self, k: int, bike: EBike, now_ms: int) -> None:
        self._absorb(self.model.plug(k + 1, bike, now_ms))

    def unplug(self, k: int, now_ms: int) -> None:
        self._absorb(self.model.unplug(k + 1, now_ms))

    def tap_card(self, k: int, card_uid: str, now_ms: int) -> int:
        """An IC card on socket k's reader: its low word goes to the card register."""
        self.tick(now_ms)
        uid = card_uid.upper()
        if not 4 <= len(uid) <= 20 or any(c not in "0123456789ABCDEF" for c in uid):
            raise ValueError("card_uid must be 4-20 hex digits")
        word = int(uid[-4:], 16)
        if word == 0:
            raise ValueError("a UID whose low word is 0 reads as 'no card'")
        self._sockets[k].card = word
        return word

    def reboot(self, now_ms: int) -> None:
        """Firmware restart: relays off, registers back to defaults, uptime 0, new slave id."""
        self._absorb(self.model.reboot(now_ms))
        self._sockets = [
            _Socket(max_w=self._default_max_w, v=s.v, forced_v=s.forced_v) for s in self._sockets
        ]
        self._boot_ms = now_ms
        self.slave = self._next_slave

    def force_reading(
        self, k: int, *, v: float | None = None, a: float | None = None, w: float | None = None
    ) -> None:
        """Fix what the meter of socket k reports (None: back to the model)."""
        s = self._sockets[k]
        s.forced_v, s.forced_a, s.forced_w = v, a, w

    # ------------------------------------------------------------------ inspection

    def relay(self, k: int) -> bool:
        return self.model.relay(k + 1)

    def register(self, k: int) -> int:
        return self.model.register(k + 1)

    def true_wh(self, k: int) -> float:
        return self.model.true_wh(k + 1)

    def holding(self, k: int) -> tuple[int, int, int, int]:
        """Socket k's holding registers: command, lease, max power, card."""
        regs = self._holding_map()
        base = _HOLDING_AT + 4 * k
        return regs[base], regs[base + 1], regs[base + 2], regs[base + 3]

    def uptime_s(self, now_ms: int) -> int:
        return max(0, now_ms - self._boot_ms) // 1000


def _slice(regs: dict[int, int], address: int, count: int) -> list[int] | int:
    if not 1 <= count <= 125:
        return ILLEGAL_VALUE
    try:
        return [regs[a] for a in range(address, address + count)]
    except KeyError:
        return ILLEGAL_ADDRESS
