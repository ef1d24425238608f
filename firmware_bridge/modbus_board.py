"""What the bridge knows of one Modbus board, and the port messages its reads become. Pure.

`BoardTracker` is fed decoded reads and `now_ms`, and returns the same typed
messages an MQTT board produces (`Telemetry`, `PortEvent`, `BoardStatus`), so
the controller cannot tell the transports apart:

- every socket read gives one `Telemetry` per port, with `seq` a per-port u32
  counter kept here (a board on RS-485 has no sequence numbers);
- a status bit that rises (overcurrent, overtemp, relay_fault, lease_expired)
  gives that `PortEvent`, before the port's telemetry. The first read after the
  bridge starts is only a baseline: bits latched before are old news;
- a board comes online (`BoardStatus(online=True, fw, ports)`) with its first
  good info read, and goes offline after `offline_after_cycles` failed poll
  cycles in a row (`BoardStatus(online=False)`);
- uptime going back means the board rebooted: `seq` restarts at 0 for its
  ports (the controller's metering sees the reboot, as with MQTT boards), and
  the board says online again, as an MQTT board does when it boots;
- card taps: see `cards_read`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from firmware_bridge.messages import BoardStatus, DeviceMessage, PortEvent, Telemetry
from firmware_bridge.modbus_registers import (
    MAP_VERSION,
    TRIP_BITS,
    U32,
    BoardInfo,
    SocketState,
    card_uid,
)

REBOOT_SLACK_S = 2.0  # uptime counts whole seconds, and the two clocks drift
REBOOT_SLACK_RATE = 0.02


@dataclass(frozen=True, slots=True)
class CardTaps:
    """The result of a card read: events to deliver, and sockets whose register to clear."""

    events: list[PortEvent]
    clear: list[int]


class BoardTracker:
    """One board on a bus: slave id, board id, shed ports in socket order (k = 0..N-1)."""

    def __init__(
        self, slave: int, board_id: str, ports: Sequence[int], *, offline_after_cycles: int
    ) -> None:
        if not ports:
            raise ValueError("a board carries at least one port")
        self.slave = slave
        self.board_id = board_id
        self.ports: tuple[int, ...] = tuple(ports)
        self.offline_after_cycles = offline_after_cycles
        self.online: bool | None = None  # None: not heard from yet
        self.failed_cycles = 0
        self.info: BoardInfo | None = None
        self.reboots = 0
        self.cycles_since_info = 0
        self.clears_cards = True  # False once the board refuses the write-back
        n = len(self.ports)
        self._info_ms: int | None = None
        self._seq = [0] * n
        self._status: list[int] | None = None  # None until the first socket read (baseline)
        self._relay: list[bool | None] = [None] * n
        self._cards_seen: list[int] | None = None  # None until the first card read
        self._clear_pending = [0] * n  # card word reported, write-back not yet confirmed

    # ------------------------------------------------------------------ shape

    @property
    def sockets(self) -> int:
        """Sockets to poll: the configured ports, or fewer if the board has fewer."""
        if self.info is None:
            return len(self.ports)
        return max(1, min(len(self.ports), self.info.sockets))

    def socket_of(self, port: int) -> int:
        return self.ports.index(port)

    def relay(self, k: int) -> bool | None:
        """The relay as last read or commanded; None if not known yet."""
        return self._relay[k]

    def set_relay(self, k: int, on: bool) -> None:
        self._relay[k] = on

    # ------------------------------------------------------------------ reads

    def info_read(self, info: BoardInfo, now_ms: int) -> list[DeviceMessage]:
        """Registers 0..5 read: online, reboot detection."""
        if info.map_version != MAP_VERSION:
            raise ValueError(f"board {self.board_id} reports register map v{info.map_version}")
        out: list[DeviceMessage] = []
        rebooted = self._rebooted(info, now_ms)
        if rebooted:
            self.reboots += 1
            self._seq = [0] * len(self.ports)
            self._relay = [False] * len(self.ports)  # a board boots with every relay off
            if self._status is not None:
                self._status = [0] * len(self.ports)  # and its latched bits cleared
            self._clear_pending = [0] * len(self.ports)
            if self._cards_seen is not None:
                self._cards_seen = [0] * len(self.ports)
        self.info = info
        self._info_ms = now_ms
        self.cycles_since_info = 0
        self.failed_cycles = 0
        if self.online is not True or rebooted:
            self.online = True
            out.append(BoardStatus(self.board_id, True, info.firmware, self.ports, now_ms))
        return out

    def _rebooted(self, info: BoardInfo, now_ms: int) -> bool:
        """Uptime went back: lower than the last reading plus the time since, less some slack."""
        if self.info is None or self._info_ms is None:
            return False
        elapsed_s = max(0, now_ms - self._info_ms) / 1000
        expected = self.info.uptime_s + elapsed_s
        return info.uptime_s + REBOOT_SLACK_S + REBOOT_SLACK_RATE * elapsed_s < expected

    def relay_dropped(self, states: Sequence[SocketState]) -> bool:
        """A relay read on last time reads off now: worth an info read (was it a reboot?)."""
        return any(self._relay[k] is True and not s.relay for k, s in enumerate(states))

    def sockets_read(
        self, states: Sequence[SocketState], now_ms: int, first: int = 0
    ) -> list[DeviceMessage]:
        """Sockets first..first+len-1 read: events on rising status bits, then telemetry."""
        n = len(self.ports)
        if self._status is None:
            self._status = [s.status for s in states] + [0] * (n - len(states))
            baseline = True
        else:
            baseline = False
        events: list[DeviceMessage] = []
        samples: list[DeviceMessage] = []
        for i, s in enumerate(states):
            k = first + i
            port = self.ports[k]
            if not baseline:
                rising = s.status & ~self._status[k]
                events.extend(
                    PortEvent(port, now_ms, kind) for bit, kind in TRIP_BITS if rising & bit
                )
            self._status[k] = s.status
            self._relay[k] = s.relay
            seq = self._seq[k]
            self._seq[k] = (seq + 1) % U32
            samples.append(Telemetry(port, now_ms, seq, s.v, s.a, s.w, s.wh, s.relay, s.temp_c))
        self.failed_cycles = 0
        return events + samples

    def cycle_failed(self, now_ms: int) -> list[DeviceMessage]:
        """A poll cycle got no socket data from this board."""
        self.failed_cycles += 1
        if self.failed_cycles < self.offline_after_cycles:
            return []
        return self.unreachable(now_ms)

    def unreachable(self, now_ms: int) -> list[DeviceMessage]:
        """Offline now (its failed cycles are up, or the serial port itself failed)."""
        self.failed_cycles = max(self.failed_cycles, self.offline_after_cycles)
        if self.online is False:
            return []
        self.online = False
        self._relay = [None] * len(self.ports)
        self._cards_seen = None  # taps waiting on a board that was away are stale
        self._clear_pending = [0] * len(self.ports)
        return [BoardStatus(self.board_id, False, ts=now_ms)]

    # ------------------------------------------------------------------ cards

    def cards_read(self, words: Sequence[int], now_ms: int) -> CardTaps:
        """The card register of each socket read (holding 2000 + 4k + 3, low word of the UID).

        A tap is a non-zero word; the bridge clears it by writing 0 back, so the
        same card tapped again (to stop) is a new tap. A word whose write-back is
        not confirmed yet is not reported twice. A board that refuses the
        write-back (`clears_cards` False) is read by change instead: a new
        non-zero word is a tap, the same card twice in a row is seen once.
        The first read after start or after the board was offline only clears:
        a tap that waited there is stale (the rider has gone or taps again).
        """
        events: list[PortEvent] = []
        clear: list[int] = []
        first_read = self._cards_seen is None
        seen = self._cards_seen if self._cards_seen is not None else [0] * len(self.ports)
        for k, word in enumerate(words):
            if word == 0:
                self._clear_pending[k] = 0
            elif first_read:
                if self.clears_cards:
                    self._clear_pending[k] = word  # cleared without an event
                    clear.append(k)
            elif self.clears_cards:
                if word != self._clear_pending[k]:
                    events.append(PortEvent(self.ports[k], now_ms, "card", card_uid(word)))
                    self._clear_pending[k] = word
                clear.append(k)
            elif word != seen[k]:
                events.append(PortEvent(self.ports[k], now_ms, "card", card_uid(word)))
            seen[k] = word
        self._cards_seen = seen
        return CardTaps(events, clear)

    def card_cleared(self, k: int) -> None:
        """The write-back of socket k's card register was confirmed."""
        self._clear_pending[k] = 0
        if self._cards_seen is not None:
            self._cards_seen[k] = 0
