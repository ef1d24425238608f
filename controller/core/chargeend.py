"""Charge-end detection: full (then float), unplugged (then grace).

Fed with every accepted power sample of a running session. Defaults:
- full: power below `full_threshold_w` continuously for `full_hold_s`, having
  tapered through the float band (at or above `unplug_threshold_w`) rather than
  dropped straight to nothing; the session then floats for `float_s` and
  stops ("充满自停"). If the charger falls silent during the float, the
  session ends as full too;
- unplugged: the time-weighted average over the last `unplug_window_s` is
  below `unplug_threshold_w`, then a grace of `unplug_grace_s` during which a
  returning load cancels it. Needs a full window of samples: a session never
  ends as unplugged from too little data.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from controller.core.config import RuleConfig


class Detection(Enum):
    LOAD = "load"
    FULL = "full"
    RECHARGE = "recharge"
    FLOAT_DONE = "float_done"
    UNPLUGGED = "unplugged"


@dataclass(slots=True)
class WindowAverage:
    """Time-weighted average power over a sliding window, O(1) amortised."""

    window_ms: int
    _samples: deque[tuple[int, float]] = field(default_factory=deque)
    _area: float = 0.0  # W*ms between consecutive kept samples

    def add(self, ts: int, w: float) -> None:
        if self._samples:
            last_ts, last_w = self._samples[-1]
            self._area += last_w * (ts - last_ts)
        self._samples.append((ts, w))
        while len(self._samples) >= 2 and self._samples[1][0] <= ts - self.window_ms:
            t0, w0 = self._samples.popleft()
            self._area -= w0 * (self._samples[0][0] - t0)

    def span_ms(self) -> int:
        return self._samples[-1][0] - self._samples[0][0] if self._samples else 0

    def average(self) -> float | None:
        span = self.span_ms()
        if span < self.window_ms:
            return None
        return self._area / span


@dataclass(slots=True)
class ChargeEndDetector:
    rules: RuleConfig
    float_s: int
    load_seen: bool = False
    below_full_since: int | None = None
    tapered: bool = False
    full_at: int | None = None
    unplug_suspect_since: int | None = None
    _avg: WindowAverage = field(init=False)

    def __post_init__(self) -> None:
        self._avg = WindowAverage(self.rules.unplug_window_s * 1000)

    def feed(self, ts: int, w: float) -> Detection | None:
        r = self.rules
        if not self.load_seen:
            if w > r.load_threshold_w:
                self.load_seen = True
                self._avg.add(ts, w)
                return Detection.LOAD
            return None
        self._avg.add(ts, w)
        avg = self._avg.average()
        if avg is not None and avg < r.unplug_threshold_w:
            if self.unplug_suspect_since is None:
                self.unplug_suspect_since = ts
        elif avg is not None and avg >= r.unplug_threshold_w:
            self.unplug_suspect_since = None
        if w < r.full_threshold_w:
            if self.below_full_since is None:
                self.below_full_since, self.tapered = ts, False
            # A charger that tapers passes through the float band; power that drops
            # straight to nothing is a bike unplugged, not a full battery.
            self.tapered = self.tapered or w >= r.unplug_threshold_w
            held = ts - self.below_full_since >= r.full_hold_s * 1000
            if self.full_at is None and held and self.tapered:
                self.full_at = ts
                return Detection.FULL
        else:
            self.below_full_since = None
            if self.full_at is not None:
                self.full_at = None
                return Detection.RECHARGE
        return None

    def due(self, now_ms: int) -> Detection | None:
        """Timer-driven outcomes: float time over, unplug grace over."""
        since = self.unplug_suspect_since
        if since is not None and now_ms - since >= self.rules.unplug_grace_s * 1000:
            return Detection.UNPLUGGED
        if self.full_at is not None and now_ms - self.full_at >= self.float_s * 1000:
            return Detection.FLOAT_DONE
        return None
