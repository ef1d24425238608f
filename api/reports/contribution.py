"""What one closed session adds to the rollups (pure).

A session counts (sessions, energy, billed and refunded fen, duration, end
reason) on the local day and hour it started, at its socket; the time it
held the socket (started to ended) is split over every local day and hour it
spans, so utilisation is exact to the millisecond whatever the period. A
session that is not closed adds nothing yet.

The result is a `Contribution`: counts per socket-day and per shed-hour. The
rollup keeps each session's contribution, and applies the difference when a
corrected version of the session arrives (`Contribution.minus`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from api.reports.periods import DAY_MS, HOUR_MS, day_start_ms, hour_start_ms
from api.reports.reasons import end_group

# A session holds its socket for at most 24 h (the hard cap); a closing record
# after a long outage can say more. In-use time is counted up to this.
MAX_IN_USE_MS: Final = 48 * HOUR_MS

K = TypeVar("K")
DayKey = tuple[int, int]  # port, day_ms
Counts = dict[str, int]


@dataclass(frozen=True, slots=True)
class SessionFigures:
    """The fields of a session record the report reads."""

    port: int
    started_ms: int
    ended_ms: int | None
    end_reason: str | None
    energy_wh: int
    billed_fen: int
    refund_fen: int


@dataclass(slots=True)
class Contribution:
    days: dict[DayKey, Counts] = field(default_factory=dict)
    hours: dict[int, Counts] = field(default_factory=dict)

    def minus(self, other: Contribution) -> Contribution:
        """self - other, without the rows and counts that do not change."""
        return Contribution(_diff(self.days, other.days), _diff(self.hours, other.hours))

    def merge(self, other: Contribution) -> None:
        """Add `other` to this one, in place (to sum many sessions)."""
        for key, counts in other.days.items():
            row = self.days.setdefault(key, {})
            for name, value in counts.items():
                _add(row, name, value)
        for hour, counts in other.hours.items():
            row = self.hours.setdefault(hour, {})
            for name, value in counts.items():
                _add(row, name, value)

    def is_empty(self) -> bool:
        return not self.days and not self.hours

    def to_json(self) -> dict[str, Any]:
        return {
            "days": [[port, day, counts] for (port, day), counts in sorted(self.days.items())],
            "hours": [[hour, counts] for hour, counts in sorted(self.hours.items())],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Contribution:
        return cls(
            {(int(p), int(d)): dict(c) for p, d, c in data.get("days", [])},
            {int(h): dict(c) for h, c in data.get("hours", [])},
        )


def contribution(s: SessionFigures) -> Contribution:
    if s.ended_ms is None:
        return Contribution()
    start_day = day_start_ms(s.started_ms)
    start_hour = hour_start_ms(s.started_ms)
    days: defaultdict[DayKey, Counts] = defaultdict(dict)
    hours: defaultdict[int, Counts] = defaultdict(dict)
    first = days[(s.port, start_day)]
    first.update(
        sessions=1,
        energy_wh=s.energy_wh,
        billed_fen=s.billed_fen,
        refund_fen=s.refund_fen,
        duration_ms=s.ended_ms - s.started_ms,
    )
    first[f"end_{end_group(s.end_reason)}"] = 1
    hours[start_hour]["sessions"] = 1
    end = min(s.ended_ms, s.started_ms + MAX_IN_USE_MS)
    for begin, stop in _spans(s.started_ms, end, DAY_MS, day_start_ms):
        _add(days[(s.port, day_start_ms(begin))], "in_use_ms", stop - begin)
    for begin, stop in _spans(s.started_ms, end, HOUR_MS, hour_start_ms):
        _add(hours[hour_start_ms(begin)], "in_use_ms", stop - begin)
    return Contribution(_nonzero(days), _nonzero(hours))


def _spans(
    start: int, end: int, step: int, floor: Callable[[int], int]
) -> Iterator[tuple[int, int]]:
    """[start, end) cut at every boundary of `step` (local days or hours)."""
    begin = start
    while begin < end:
        stop = min(end, floor(begin) + step)
        yield begin, stop
        begin = stop


def _add(counts: Counts, name: str, value: int) -> None:
    counts[name] = counts.get(name, 0) + value


def _nonzero(rows: Mapping[K, Counts]) -> dict[K, Counts]:
    out: dict[K, Counts] = {}
    for key, counts in rows.items():
        kept = {name: value for name, value in counts.items() if value}
        if kept:
            out[key] = kept
    return out


def _diff(new: Mapping[K, Counts], old: Mapping[K, Counts]) -> dict[K, Counts]:
    out: dict[K, Counts] = {}
    for key in new.keys() | old.keys():
        a, b = new.get(key, {}), old.get(key, {})
        delta = {n: a.get(n, 0) - b.get(n, 0) for n in a.keys() | b.keys()}
        delta = {n: v for n, v in delta.items() if v}
        if delta:
            out[key] = delta
    return out
