"""The register map of contract modbus-rtu-board-v1, as the bridge reads it. Pure.

Register numbers, status bits, scaling and which reads and writes the bridge
makes. No framing (see `modbus_codec`), no I/O. Sockets are 0-based `k` here,
as in the registers; the bridge maps them to shed port numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from firmware_bridge.messages import EventType

MAP_VERSION = 1

# Input registers (FC 04)
INFO_ADDRESS = 0  # map version, sockets, firmware, board temperature, uptime (u32)
INFO_COUNT = 6
SOCKET_BASE = 1000
SOCKET_STRIDE = 8

# Holding registers (FC 03 / 06 / 16)
HOLDING_BASE = 2000
HOLDING_STRIDE = 4
CMD_OFFSET = 0  # write 1 = on, 0 = off
LEASE_OFFSET = 1  # lease seconds for the next on; writing it while on renews
MAX_W_OFFSET = 2  # max power, W
CARD_OFFSET = 3  # last IC card UID tapped, low word; 0 = none
SLAVE_ID_ADDRESS = 3000

MAX_SOCKETS = 16
MAX_READ_REGISTERS = 125  # Modbus limit of one FC 03 / FC 04 read
SOCKETS_PER_READ = MAX_READ_REGISTERS // SOCKET_STRIDE  # 15: 16 sockets need two reads
U16 = 1 << 16
U32 = 1 << 32

# Status bits of register 1000 + 8k
RELAY = 1 << 0
LOAD = 1 << 1
OVERCURRENT = 1 << 2
OVERTEMP = 1 << 3
RELAY_FAULT = 1 << 4
LEASE_EXPIRED = 1 << 5

TRIP_BITS: tuple[tuple[int, EventType], ...] = (
    (OVERCURRENT, "overcurrent"),
    (OVERTEMP, "overtemp"),
    (RELAY_FAULT, "relay_fault"),
    (LEASE_EXPIRED, "lease_expired"),
)
"""Status bits whose rising edge is a port event, with the event type (same as MQTT)."""


def _signed(word: int) -> int:
    return word - U16 if word >= 0x8000 else word


def _word(value: int) -> int:
    """A signed or unsigned integer as one register (two's complement)."""
    if not -0x8000 <= value < U16:
        raise ValueError(f"{value} does not fit in a 16-bit register")
    return value % U16


@dataclass(frozen=True, slots=True)
class SocketState:
    """One socket's 8 input registers, decoded."""

    status: int  # raw status bits
    v: float
    a: float
    w: float
    wh: int  # u32 energy register, wraps
    temp_c: float
    lease_s: int  # seconds of lease remaining

    @property
    def relay(self) -> bool:
        return bool(self.status & RELAY)

    @property
    def load(self) -> bool:
        return bool(self.status & LOAD)

    @property
    def overcurrent(self) -> bool:
        return bool(self.status & OVERCURRENT)

    @property
    def overtemp(self) -> bool:
        return bool(self.status & OVERTEMP)

    @property
    def relay_fault(self) -> bool:
        return bool(self.status & RELAY_FAULT)

    @property
    def lease_expired(self) -> bool:
        return bool(self.status & LEASE_EXPIRED)

    @classmethod
    def from_registers(cls, regs: Sequence[int]) -> SocketState:
        if len(regs) != SOCKET_STRIDE:
            raise ValueError(f"a socket is {SOCKET_STRIDE} registers, got {len(regs)}")
        return cls(
            status=regs[0],
            v=regs[1] / 10,
            a=regs[2] / 100,
            w=regs[3] / 10,
            wh=(regs[4] << 16) | regs[5],
            temp_c=_signed(regs[6]) / 10,
            lease_s=regs[7],
        )

    def registers(self) -> list[int]:
        """The 8 registers this state reads as (values rounded to the register's unit)."""
        return [
            _word(self.status),
            _word(round(self.v * 10)),
            _word(round(self.a * 100)),
            _word(round(self.w * 10)),
            (self.wh >> 16) % U16,
            self.wh % U16,
            _word(round(self.temp_c * 10)),
            _word(self.lease_s),
        ]


def decode_sockets(regs: Sequence[int]) -> list[SocketState]:
    """A socket block (8 registers per socket, from socket 0) as socket states."""
    if len(regs) % SOCKET_STRIDE:
        raise ValueError(f"a socket block is a multiple of {SOCKET_STRIDE} registers")
    return [
        SocketState.from_registers(regs[i : i + SOCKET_STRIDE])
        for i in range(0, len(regs), SOCKET_STRIDE)
    ]


@dataclass(frozen=True, slots=True)
class BoardInfo:
    """Input registers 0..5."""

    map_version: int
    sockets: int
    firmware: str  # "major.minor", minor two digits: 104 -> "1.04"
    board_temp_c: float
    uptime_s: int

    @classmethod
    def from_registers(cls, regs: Sequence[int]) -> BoardInfo:
        if len(regs) != INFO_COUNT:
            raise ValueError(f"the info block is {INFO_COUNT} registers, got {len(regs)}")
        fw = regs[2]
        return cls(
            map_version=regs[0],
            sockets=regs[1],
            firmware=f"{fw // 100}.{fw % 100:02d}",
            board_temp_c=_signed(regs[3]) / 10,
            uptime_s=(regs[4] << 16) | regs[5],
        )


# --------------------------------------------------------------------------- what the bridge asks


def socket_reads(sockets: int) -> list[tuple[int, int, int]]:
    """FC 04 reads covering sockets 0..sockets-1: (first socket, address, count).

    One read for up to 15 sockets (a 12-socket board is 1000..1095, 96 registers);
    16 sockets exceed the 125-register limit of one read and take two.
    """
    if not 1 <= sockets <= MAX_SOCKETS:
        raise ValueError(f"a board has 1..{MAX_SOCKETS} sockets")
    reads = []
    for first in range(0, sockets, SOCKETS_PER_READ):
        n = min(SOCKETS_PER_READ, sockets - first)
        reads.append((first, SOCKET_BASE + SOCKET_STRIDE * first, SOCKET_STRIDE * n))
    return reads


def holding(k: int, offset: int) -> int:
    """Address of holding register `offset` of socket k."""
    if not 0 <= k < MAX_SOCKETS:
        raise ValueError(f"socket index {k} is not in 0..{MAX_SOCKETS - 1}")
    return HOLDING_BASE + HOLDING_STRIDE * k + offset


def card_read(sockets: int) -> tuple[int, int]:
    """FC 03 read of every socket's card register: (address, count), 4N-3 registers."""
    if not 1 <= sockets <= MAX_SOCKETS:
        raise ValueError(f"a board has 1..{MAX_SOCKETS} sockets")
    first = holding(0, CARD_OFFSET)
    return first, HOLDING_STRIDE * (sockets - 1) + 1


def cards_from_read(regs: Sequence[int], sockets: int) -> list[int]:
    """The card word of each socket from a `card_read` answer."""
    return [regs[HOLDING_STRIDE * k] for k in range(sockets)]


def card_uid(word: int) -> str:
    """The card event's `card_uid` for a card register: 4 upper-case hex digits."""
    if not 0 < word < U16:
        raise ValueError("a card register holds 1..65535 (0 means no card)")
    return f"{word:04X}"


def check_u16(name: str, value: int, *, minimum: int = 1) -> int:
    if not minimum <= value < U16:
        raise ValueError(f"{name} must be in {minimum}..{U16 - 1} (one 16-bit register)")
    return value
