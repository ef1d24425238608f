"""A report as tables of plain values, built from per-socket, per-day and
per-hour totals (pure). The rollup queries (`queries.py`) and the raw scan
(`raw.py`) both feed `build_report`, so they can only differ in their inputs.

Every table has stable column keys (the JSON and the `--table` names) and
labels in both languages (`labels.py`). Values are ints, or floats already
rounded for people: kWh to 3 places, yuan to 2 (from integer fen), minutes
and percentages to 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from api.reports.periods import DAY_MS, HOUR_MS, Period, local_date, local_hour, local_weekday
from api.reports.reasons import END_GROUPS

Counts = Mapping[str, int]
Value = int | float | str
TABLES: Final = ("summary", "days", "sheds", "sockets", "end_reasons", "hours", "heatmap")
FIGURES: Final = (
    "sessions",
    "energy_kwh",
    "revenue_yuan",
    "refunds_yuan",
    "avg_session_min",
    "utilisation_pct",
    "incidents",
    "unserved",
)


@dataclass(frozen=True, slots=True)
class ShedInfo:
    id: str
    name: str
    ports: tuple[int, ...]  # the sockets it has (as the API knows them)


@dataclass(frozen=True, slots=True)
class Totals:
    """What a report is made from, whatever computed it."""

    sockets: Mapping[tuple[str, int], Counts]  # (shed, port); port 0 = the shed
    days: Mapping[int, Counts]  # day_ms
    hours: Mapping[int, Counts]  # hour_ms, all sheds


@dataclass(slots=True)
class Table:
    name: str
    columns: list[str]
    rows: list[list[Value]] = field(default_factory=list)

    def as_dicts(self) -> list[dict[str, Value]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@dataclass(slots=True)
class Report:
    compound_id: str
    compound_name: str
    period: Period
    socket_count: int
    tables: dict[str, Table]

    def table(self, name: str) -> Table:
        return self.tables[name]

    def summary(self) -> dict[str, Value]:
        return {str(row[0]): row[1] for row in self.tables["summary"].rows}

    def to_json(self) -> dict[str, Any]:
        return {
            "compound": {"id": self.compound_id, "name": self.compound_name},
            "period": {
                "kind": self.period.kind,
                "label": self.period.label,
                "start_ms": self.period.start_ms,
                "end_ms": self.period.end_ms,
            },
            "socket_count": self.socket_count,
            "summary": self.summary(),
            "tables": {
                name: {"columns": t.columns, "rows": t.rows} for name, t in self.tables.items()
            },
        }


def build_report(
    compound_id: str,
    compound_name: str,
    period: Period,
    sheds: Sequence[ShedInfo],
    totals: Totals,
) -> Report:
    socket_count = sum(len(s.ports) for s in sheds)
    span_ms = period.end_ms - period.start_ms
    all_counts = _sum(totals.sockets.values())
    tables = {
        "summary": _summary(all_counts, socket_count * span_ms),
        "days": _days(period, totals.days, socket_count),
        "sheds": _sheds(sheds, totals.sockets, span_ms),
        "sockets": _sockets(sheds, totals.sockets, span_ms),
        "end_reasons": _end_reasons(all_counts),
        "hours": _hours(period, totals.hours, socket_count),
        "heatmap": _heatmap(totals.hours),
    }
    return Report(compound_id, compound_name, period, socket_count, tables)


# ------------------------------------------------------------------ figures


def kwh(wh: int) -> float:
    return round(wh / 1000, 3)


def yuan(fen: int) -> float:
    return round(fen / 100, 2)


def pct(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole > 0 else 0.0


def avg_minutes(duration_ms: int, sessions: int) -> float:
    return round(duration_ms / sessions / 60_000, 1) if sessions else 0.0


def _figures(c: Counts, capacity_ms: int) -> list[Value]:
    """FIGURES of one row; `capacity_ms`: socket-milliseconds available."""
    sessions = c.get("sessions", 0)
    return [
        sessions,
        kwh(c.get("energy_wh", 0)),
        yuan(c.get("billed_fen", 0)),
        yuan(c.get("refund_fen", 0)),
        avg_minutes(c.get("duration_ms", 0), sessions),
        pct(c.get("in_use_ms", 0), capacity_ms),
        c.get("incidents", 0),
        c.get("unserved", 0),
    ]


def _sum(rows: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for counts in rows:
        for name, value in counts.items():
            out[name] = out.get(name, 0) + value
    return out


# ------------------------------------------------------------------ tables


def _summary(c: Counts, capacity_ms: int) -> Table:
    table = Table("summary", ["metric", "value"])
    table.rows = [
        [name, value] for name, value in zip(FIGURES, _figures(c, capacity_ms), strict=True)
    ]
    return table


def _days(period: Period, days: Mapping[int, Counts], socket_count: int) -> Table:
    table = Table("days", ["date", *FIGURES])
    for day in period.day_starts():
        counts = days.get(day, {})
        table.rows.append([local_date(day).isoformat(), *_figures(counts, socket_count * DAY_MS)])
    return table


def _shed_ports(
    sheds: Sequence[ShedInfo], sockets: Mapping[tuple[str, int], Counts]
) -> dict[str, list[int]]:
    ports = {s.id: set(s.ports) for s in sheds}
    for shed_id, port in sockets:
        if shed_id in ports and port != 0:
            ports[shed_id].add(port)
    return {shed_id: sorted(p) for shed_id, p in ports.items()}


def _sheds(
    sheds: Sequence[ShedInfo], sockets: Mapping[tuple[str, int], Counts], span_ms: int
) -> Table:
    table = Table("sheds", ["shed", "shed_name", "socket_count", *FIGURES])
    per_shed: dict[str, list[Counts]] = {}
    for (shed_id, _port), counts in sockets.items():
        per_shed.setdefault(shed_id, []).append(counts)
    for shed in sheds:
        counts = _sum(per_shed.get(shed.id, []))
        capacity = len(shed.ports) * span_ms
        table.rows.append([shed.id, shed.name, len(shed.ports), *_figures(counts, capacity)])
    return table


def _sockets(
    sheds: Sequence[ShedInfo], sockets: Mapping[tuple[str, int], Counts], span_ms: int
) -> Table:
    table = Table("sockets", ["shed", "port", *FIGURES])
    for shed_id, ports in _shed_ports(sheds, sockets).items():
        for port in ports:
            table.rows.append([shed_id, port, *_figures(sockets.get((shed_id, port), {}), span_ms)])
        shed_level = sockets.get((shed_id, 0))
        if shed_level:  # smoke alarms, unserved demand: the shed as a whole
            table.rows.append([shed_id, 0, *_figures(shed_level, 0)])
    return table


def _end_reasons(c: Counts) -> Table:
    table = Table("end_reasons", ["end_reason", "sessions", "share_pct"])
    total = c.get("sessions", 0)
    for group in END_GROUPS:
        n = c.get(f"end_{group}", 0)
        table.rows.append([group, n, pct(n, total)])
    return table


def _hours(period: Period, hours: Mapping[int, Counts], socket_count: int) -> Table:
    table = Table("hours", ["hour", "sessions", "utilisation_pct", "unserved"])
    grouped: list[list[Counts]] = [[] for _ in range(24)]
    for hour_ms, counts in hours.items():
        grouped[local_hour(hour_ms)].append(counts)
    by_hour = [_sum(group) for group in grouped]
    capacity = socket_count * period.days * HOUR_MS
    for hour, counts in enumerate(by_hour):
        table.rows.append(
            [
                hour,
                counts.get("sessions", 0),
                pct(counts.get("in_use_ms", 0), capacity),
                counts.get("unserved", 0),
            ]
        )
    return table


def _heatmap(hours: Mapping[int, Counts]) -> Table:
    """Sessions started per weekday (rows, Monday first) and local hour (columns)."""
    table = Table("heatmap", ["weekday", *(f"h{h:02d}" for h in range(24))])
    grid = [[0] * 24 for _ in range(7)]
    for hour_ms, counts in hours.items():
        grid[local_weekday(hour_ms)][local_hour(hour_ms)] += counts.get("sessions", 0)
    for weekday, cells in enumerate(grid):
        table.rows.append([weekday, *cells])
    return table
