"""Wire time on an RS-485 line, and waiting to the millisecond. Pure except `sleep_until`.

A character is a start bit, 8 data bits, a parity bit if any, and 1 or 2 stop
bits: 11 bits in 8E1, 8O1 and 8N2. RTU frames are separated by at least 3.5
characters of silence. One request/response exchange therefore occupies the
bus for `request + response` characters plus two gaps; the contract's example,
a 96-register read at 9600 baud 8E1, is (8 + 197 + 7) x 11 / 9600 = 242.9 ms.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

GAP_CHARS = 3.5
_SPIN_S = 0.0015  # the event loop wakes up to 1 ms late; spin the last bit of a short wait


def bits_per_char(parity: str, stopbits: int) -> int:
    if parity not in ("E", "O", "N"):
        raise ValueError("parity must be 'E', 'O' or 'N'")
    if stopbits not in (1, 2):
        raise ValueError("stopbits must be 1 or 2")
    return 1 + 8 + (0 if parity == "N" else 1) + stopbits


@dataclass(frozen=True, slots=True)
class LineTiming:
    baud: int
    bits_per_char: int = 11

    @property
    def char_s(self) -> float:
        return self.bits_per_char / self.baud

    @property
    def gap_s(self) -> float:
        """The 3.5-character silence that ends a frame."""
        return GAP_CHARS * self.char_s

    def frame_s(self, n_bytes: int) -> float:
        return n_bytes * self.char_s

    def exchange_s(self, request_bytes: int, response_bytes: int) -> float:
        """Bus time of one request and its response, each followed by a gap."""
        return self.frame_s(request_bytes + response_bytes) + 2 * self.gap_s


async def sleep_until(deadline: float) -> None:
    """Sleep until `time.monotonic()` reaches `deadline`, without the loop's 1 ms overshoot.

    The last 1.5 ms or less are spun. Used only for the inter-frame gap and the
    simulated wire, where a millisecond is a tenth of a frame at 115200 baud.
    """
    remaining = deadline - time.monotonic()
    if remaining > _SPIN_S:
        await asyncio.sleep(remaining - _SPIN_S + 0.0005)
    while time.monotonic() < deadline:
        pass
