"""The report charts' y axes: round, evenly spaced ticks from 0 past the highest bar."""

from __future__ import annotations

import re

import pytest

from api.reports.charts import bars, ticks


@pytest.mark.parametrize(
    ("peak", "expected"),
    [
        (0, [0, 1]),
        (1, [0, 0.2, 0.4, 0.6, 0.8, 1]),
        (3, [0, 1, 2, 3]),
        (7, [0, 2, 4, 6, 8]),
        (17, [0, 5, 10, 15, 20]),
        (99, [0, 20, 40, 60, 80, 100]),
        (240, [0, 50, 100, 150, 200, 250]),
        (0.3, [0, 0.1, 0.2, 0.3]),
    ],
)
def test_ticks_are_round_and_cover_the_peak(peak: float, expected: list[float]) -> None:
    assert ticks(peak) == pytest.approx(expected)


def test_a_bar_chart_labels_its_axis_and_spaces_its_day_labels() -> None:
    days = [f"11-{d:02d}" for d in range(1, 31)]
    svg = str(bars("sessions", days, [float(d % 9) for d in range(30)]))
    axis = re.findall(r'text-anchor="end"[^>]*>([^<]+)<', svg)
    assert axis == ["0", "2", "4", "6", "8"]
    shown = re.findall(r'text-anchor="middle"[^>]*>([^<]+)<', svg)
    assert 5 <= len(shown) <= 15 and shown[0] == "11-01"  # every n-th, none overlapping
    assert 'font-size="16"' in svg
