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
    """Time-weighted average power over a sliding window, in constant memory.

    Energy (W*ms) and covered time are kept in fixed buckets (a tenth of the
    window each), so a board that floods samples costs no more memory than one
    that reports every 10 s. The window is as exact as its oldest bucket.

    It is read after every sample, so the sums over the buckets before the
    newest are kept, and summed again only when a bucket opens: the average is
    O(1), and adds the same floats in the same order as a sum over all buckets.
    """

    window_ms: int
    _bucket_ms: int = 0
    _buckets: deque[list[int | float]] = field(default_factory=deque)  # [start, area, span]
    _last_ts: int | None = None
    _last_w: float = 0.0
    _older_area: float = 0.0  # sums over every bucket but the newest
    _older_span: int = 0

    def __post_init__(self) -> None:
        self._bucket_ms = max(1, self.window_ms // 10)

    def add(self, ts: int, w: float) -> None:
        last_ts, last_w = self._last_ts, self._last_w
        self._last_ts, self._last_w = ts, w
        if last_ts is None or ts <= last_ts:
            return
        buckets = self._buckets
        start = ts - ts % self._bucket_ms
        if not buckets or buckets[-1][0] != start:
            # Buckets are aligned, so the oldest can leave the window only when a new
            # one opens: drop them, and sum what stays once, for every read until then.
            while buckets and buckets[0][0] + self._bucket_ms <= ts - self.window_ms:
                buckets.popleft()
            self._older_area = sum(b[1] for b in buckets)
            self._older_span = int(sum(b[2] for b in buckets))
            buckets.append([start, 0.0, 0])
        bucket = buckets[-1]
        bucket[1] += last_w * (ts - last_ts)  # sample-and-hold from the previous sample
        bucket[2] += ts - last_ts

    def span_ms(self) -> int:
        return self._older_span + int(self._buckets[-1][2]) if self._buckets else 0

    def average(self) -> float | None:
        span = self.span_ms()
        if span < self.window_ms:
            return None
        return float(self._older_area + self._buckets[-1][1]) / span


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
