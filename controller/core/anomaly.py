"""Charge-curve anomalies: what a session's power and its socket's temperature say.

Not safety (that is `shed.py`'s trips), but signs that a charger or a pack is
wrong, for staff to look at and for the resident to be told:

- `anomaly_no_taper`: power held flat (within `anomaly_flat_band` of its top)
  above the full threshold for `anomaly_flat_s`: a charger that never tapers;
- `anomaly_unstable_power`: `anomaly_jump_count` or more jumps of at least
  `anomaly_jump_w` between consecutive samples within `anomaly_jump_window_s`:
  power that jumps or oscillates;
- `anomaly_energy_excess`: more energy than `anomaly_energy_factor` x the
  pack its charger suggests (the highest sustained per-minute power x
  `anomaly_pack_hours`): a pack that takes far more than its size;
- `anomaly_temp_rise`: the socket's temperature rose `anomaly_temp_rise_c` or
  more within `anomaly_temp_window_s`, still below the overtemp trip (above
  `overtemp_c` the safety rule trips the socket within seconds);
- `anomaly_no_load`: power drawn for `anomaly_no_load_s` without ever reaching
  the full threshold: a charger on standby, with no battery taking charge.

Cost is split: `feed()` runs per accepted sample on the hot path and only
keeps the current minute's low, high and jump count; `roll()` runs from the
tick once a minute, closes the minute and checks the rules. Memory is bounded
by the longest window in minutes. Each kind is reported once per session.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from controller.core.config import RuleConfig

MINUTE_MS = 60_000
ANOMALY_KINDS = (
    "anomaly_no_taper",
    "anomaly_unstable_power",
    "anomaly_energy_excess",
    "anomaly_temp_rise",
    "anomaly_no_load",
)


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: str  # one of ANOMALY_KINDS
    detail: str  # English, in the shapes api/web/staff_i18n.py translates


@dataclass(slots=True)
class AnomalyDetector:
    rules: RuleConfig
    started_ms: int
    # A session restored after a restart: what came before is unknown, so energy is
    # counted from the first check on, and it is taken to have charged already.
    resumed: bool = False
    next_roll_ms: int = 0
    reported: set[str] = field(default_factory=set)
    # The current minute, fed per sample.
    _lo: float = float("inf")
    _hi: float = float("-inf")
    _jumps: int = 0
    _last_w: float = 0.0
    _jump_w: float = 0.0
    # Closed minutes and running state, updated by roll().
    _jump_minutes: deque[tuple[int, int]] = field(default_factory=deque)  # (start, jumps)
    _temps: deque[tuple[int, float]] = field(default_factory=deque)  # (ms, °C)
    _flat_since: int | None = None
    _flat_lo: float = 0.0
    _flat_hi: float = 0.0
    _sustained_w: float = 0.0  # highest per-minute low: what the charger holds
    _drawing_since: int | None = None
    _charged: bool = False  # reached the full threshold at least once
    _energy_base_wh: float | None = None

    def __post_init__(self) -> None:
        self._jump_w = self.rules.anomaly_jump_w
        self.next_roll_ms = self.started_ms + MINUTE_MS
        self._charged = self.resumed

    def feed(self, w: float) -> None:
        """One accepted sample of the running session: O(1), no allocation."""
        if w > self._hi:
            self._hi = w
        if w < self._lo:
            self._lo = w
        d = w - self._last_w
        if d >= self._jump_w or -d >= self._jump_w:
            self._jumps += 1
        self._last_w = w

    def roll(self, now_ms: int, temp_c: float | None, energy_wh: float) -> list[Anomaly]:
        """Close the minute (due at `next_roll_ms`) and answer what is newly found."""
        r = self.rules
        self.next_roll_ms = now_ms + MINUTE_MS
        lo, hi, jumps = self._lo, self._hi, self._jumps
        self._lo, self._hi, self._jumps = float("inf"), float("-inf"), 0
        found: list[Anomaly] = []
        if hi >= lo:  # the minute had samples
            self._minute(now_ms, lo, hi, found)
        self._unstable(now_ms, jumps, found)
        if self._energy_base_wh is None:
            self._energy_base_wh = energy_wh if self.resumed else 0.0
        self._energy(energy_wh - self._energy_base_wh, found)
        if temp_c is not None and temp_c <= r.overtemp_c:  # above it, the trip's business
            self._temp(now_ms, temp_c, found)
        if (
            not self._charged
            and self._drawing_since is not None
            and now_ms - self._drawing_since >= r.anomaly_no_load_s * 1000
        ):
            self._report(found, "anomaly_no_load",
                         f"drawing {hi if hi >= lo else self._last_w:.0f} W for "
                         f"{(now_ms - self._drawing_since) // MINUTE_MS} min "
                         "without charging a battery")  # fmt: skip
        return found

    def _minute(self, now_ms: int, lo: float, hi: float, found: list[Anomaly]) -> None:
        r = self.rules
        if hi >= r.full_threshold_w:
            self._charged = True
        if hi > r.load_threshold_w:
            if self._drawing_since is None:
                self._drawing_since = now_ms - MINUTE_MS
        else:
            self._drawing_since = None
        self._sustained_w = max(self._sustained_w, lo)
        if lo < r.full_threshold_w:
            self._flat_since = None
            return
        if self._flat_since is None:
            self._flat_since, self._flat_lo, self._flat_hi = now_ms - MINUTE_MS, lo, hi
        else:
            flat_lo, flat_hi = min(self._flat_lo, lo), max(self._flat_hi, hi)
            if flat_hi - flat_lo > r.anomaly_flat_band * flat_hi:
                self._flat_since, flat_lo, flat_hi = now_ms - MINUTE_MS, lo, hi
            self._flat_lo, self._flat_hi = flat_lo, flat_hi
        held_ms = now_ms - self._flat_since
        if held_ms >= r.anomaly_flat_s * 1000:
            self._report(found, "anomaly_no_taper",
                         f"power flat at {self._flat_hi:.0f} W for "
                         f"{held_ms // MINUTE_MS} min without tapering")  # fmt: skip

    def _unstable(self, now_ms: int, jumps: int, found: list[Anomaly]) -> None:
        r = self.rules
        window = self._jump_minutes
        if jumps:
            window.append((now_ms, jumps))
        while window and window[0][0] <= now_ms - r.anomaly_jump_window_s * 1000:
            window.popleft()
        total = sum(n for _, n in window)
        if total >= r.anomaly_jump_count:
            self._report(found, "anomaly_unstable_power",
                         f"{total} power jumps of {r.anomaly_jump_w:.0f} W or more in "
                         f"{r.anomaly_jump_window_s // 60} min")  # fmt: skip

    def _energy(self, energy_wh: float, found: list[Anomaly]) -> None:
        r = self.rules
        pack_wh = self._sustained_w * r.anomaly_pack_hours
        sustained = self._sustained_w >= r.full_threshold_w
        if sustained and energy_wh > r.anomaly_energy_factor * pack_wh:
            self._report(found, "anomaly_energy_excess",
                         f"{energy_wh:.0f} Wh taken, a {self._sustained_w:.0f} W charger "
                         f"suggests a {pack_wh:.0f} Wh pack")  # fmt: skip

    def _temp(self, now_ms: int, temp_c: float, found: list[Anomaly]) -> None:
        r = self.rules
        temps = self._temps
        temps.append((now_ms, temp_c))
        while temps[0][0] < now_ms - r.anomaly_temp_window_s * 1000:
            temps.popleft()
        coldest = min(t for _, t in temps)
        rise = temp_c - coldest
        if rise >= r.anomaly_temp_rise_c:
            self._report(found, "anomaly_temp_rise",
                         f"socket rose {rise:.1f} °C to {temp_c:.1f} °C in "
                         f"{r.anomaly_temp_window_s // 60} min")  # fmt: skip

    def _report(self, found: list[Anomaly], kind: str, detail: str) -> None:
        if kind not in self.reported:
            self.reported.add(kind)
            found.append(Anomaly(kind, detail))
