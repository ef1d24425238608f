"""Port metering: energy from the meter register, never from integrated power.

Each port keeps the newest accepted sample. A new sample gives an energy delta
equal to the register difference modulo 2^32 (the register wraps), with these
rules from the device contract:

- a sample older than the newest one seen (by `ts`) is discarded and counted;
- `ts` more than 5 minutes ahead of the controller's clock is discarded;
- `seq` stepping backwards means the board rebooted. Meter registers are
  non-volatile, so the difference is still used, but only if it is plausible;
- a difference larger than the port could physically draw in the elapsed time
  (max power x time, with margin) is never billed: the meter is re-baselined
  and the jump is counted and flagged. Honest billing beats a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

U32 = 1 << 32
FUTURE_SKEW_MS = 300_000


class SampleVerdict(Enum):
    ACCEPTED = "accepted"
    FIRST = "first"  # first sample of a port: a baseline, no energy yet
    OUT_OF_ORDER = "out_of_order"
    FUTURE = "future_ts"
    DUPLICATE = "duplicate"


_ACCEPTED = SampleVerdict.ACCEPTED  # every sample names it: one look-up, not one per sample


@dataclass(slots=True)
class MeterReading:
    verdict: SampleVerdict
    delta_wh: int = 0
    rebooted: bool = False
    implausible: bool = False


@dataclass(slots=True)
class PortMeter:
    """Newest accepted register state of one port."""

    max_w: float
    last_ts: int | None = None
    last_seq: int | None = None
    last_wh: int | None = None

    def feed(self, ts: int, seq: int, wh: int, now_ms: int) -> MeterReading:
        if ts > now_ms + FUTURE_SKEW_MS:
            return MeterReading(SampleVerdict.FUTURE)
        if self.last_ts is None or self.last_wh is None or self.last_seq is None:
            self.last_ts, self.last_seq, self.last_wh = ts, seq, wh
            return MeterReading(SampleVerdict.FIRST)
        if ts < self.last_ts:
            return MeterReading(SampleVerdict.OUT_OF_ORDER)
        rebooted = seq < self.last_seq
        if ts == self.last_ts and seq == self.last_seq:
            return MeterReading(SampleVerdict.DUPLICATE)
        delta = (wh - self.last_wh) % U32
        elapsed_h = max(ts - self.last_ts, 1000) / 3_600_000
        limit = self.max_w * 2.0 * elapsed_h + 2.0
        implausible = delta > limit
        if implausible:
            delta = 0
        self.last_ts, self.last_seq, self.last_wh = ts, seq, wh
        return MeterReading(_ACCEPTED, delta, rebooted, implausible)


def register_delta(first_wh: int, last_wh: int) -> int:
    """Energy between two register readings, across at most one wrap."""
    return (last_wh - first_wh) % U32
