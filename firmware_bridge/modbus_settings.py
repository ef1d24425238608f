"""Settings of one RS-485 bus: the serial line, the boards on it, and the master's timing.

Built at start-up from the shed's configuration and passed down; invalid
values raise `ModbusConfigError("invalid_bus")` naming the bus and the value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from firmware_bridge.modbus_line import ModbusConfigError
from firmware_bridge.modbus_registers import MAX_SOCKETS
from firmware_bridge.modbus_timing import LineTiming, bits_per_char

BAUD_RATES = (9600, 19200, 115200)
_ID_RE = re.compile(r"[a-z0-9-]{1,32}")


@dataclass(frozen=True, slots=True)
class ModbusBusSettings:
    """One RS-485 line and the boards on it.

    `boards` maps slave id to (board id, shed ports in socket order): port
    `ports[k]` is socket k of the board (registers 1000 + 8k, 2000 + 4k).
    """

    device: str
    baud: int = 9600
    parity: Literal["E", "O", "N"] = "E"
    stopbits: int = 1
    boards: Mapping[int, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    timeout_s: float = 0.5
    retries: int = 2
    offline_after_cycles: int = 3
    poll_interval_s: float = 1.0
    probe_interval_s: float = 5.0
    info_every_cycles: int = 10
    card_every_cycles: int = 1  # 0: boards without card readers, never read
    bus_id: str = "rs485"
    reopen_min_s: float = 0.5
    reopen_max_s: float = 30.0
    dedupe_size: int = 256
    # 1..99: the bus thread runs SCHED_FIFO at this priority (Linux; the service needs
    # LimitRTPRIO= or CAP_SYS_NICE), so other processes cannot stretch the exchanges. 0: off.
    realtime_priority: int = 0

    def __post_init__(self) -> None:
        def bad(message: str) -> ModbusConfigError:
            return ModbusConfigError("invalid_bus", f"bus {self.bus_id!r}: {message}")

        if not self.device:
            raise bad("device must be a serial device path")
        if self.baud not in BAUD_RATES:
            raise bad(f"baud must be one of {BAUD_RATES}")
        try:
            bits_per_char(self.parity, self.stopbits)
        except ValueError as err:
            raise bad(str(err)) from None
        if not self.boards:
            raise bad("no boards")
        seen_ports: set[int] = set()
        board_ids: set[str] = set()
        for slave, (board_id, ports) in self.boards.items():
            if not 1 <= slave <= 247:
                raise bad(f"slave id {slave} is not in 1..247")
            if not _ID_RE.fullmatch(board_id) or board_id in board_ids:
                raise bad(f"board id {board_id!r} must be unique and match [a-z0-9-]{{1,32}}")
            board_ids.add(board_id)
            if not 1 <= len(ports) <= MAX_SOCKETS:
                raise bad(f"board {board_id} must carry 1..{MAX_SOCKETS} ports")
            for port in ports:
                if not 1 <= port <= 999 or port in seen_ports:
                    raise bad(f"port {port} must be in 1..999 and on one socket only")
                seen_ports.add(port)
        checks = (
            (self.timeout_s > 0, "timeout_s must be positive"),
            (0 <= self.retries <= 2, "retries must be 0..2 (the contract allows two)"),
            (self.offline_after_cycles >= 1, "offline_after_cycles must be at least 1"),
            (self.poll_interval_s >= 0, "poll_interval_s must not be negative"),
            (self.probe_interval_s >= 0, "probe_interval_s must not be negative"),
            (self.info_every_cycles >= 1, "info_every_cycles must be at least 1"),
            (self.card_every_cycles >= 0, "card_every_cycles must not be negative"),
            (0 < self.reopen_min_s <= self.reopen_max_s, "need 0 < reopen_min_s <= reopen_max_s"),
            (self.dedupe_size >= 1, "dedupe_size must be at least 1"),
            (0 <= self.realtime_priority <= 99, "realtime_priority must be 0..99 (0: off)"),
        )
        for ok, message in checks:
            if not ok:
                raise bad(message)

    @property
    def ports(self) -> tuple[int, ...]:
        """Every shed port on this bus."""
        return tuple(p for _, (_, ports) in sorted(self.boards.items()) for p in ports)

    @property
    def timing(self) -> LineTiming:
        return LineTiming(self.baud, bits_per_char(self.parity, self.stopbits))
