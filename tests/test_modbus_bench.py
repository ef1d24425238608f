"""The Modbus poll bench, small: one board at 115200 baud, a couple of cycles."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.modbus_poll import run
from tests.test_modbus_harness import thread_and_fd_check


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    with thread_and_fd_check():
        yield


def test_bench_reports_cycle_and_off_latency_against_the_wire() -> None:
    result = run(boards=(1, 2), bauds=(115200,), sockets=12, cycles=2, off_samples=2, burners=1)
    assert {"name", "figure", "baseline", "ratio", "unit", "target", "met"} <= set(result)
    assert result["name"] == "modbus_poll"
    assert result["unit"] == "ms"
    (one, two) = result["configs"]
    assert (one["boards"], two["boards"]) == (1, 2)
    # per 12-socket board and cycle: a 96-register read and a 45-register card read
    assert one["wire_ms"] == one["wire_ms_formula"] == 30.75
    assert two["wire_ms_formula"] == pytest.approx(2 * 30.75, abs=0.02)
    assert one["exchanges_per_cycle"] == 2
    for c in result["configs"]:
        # the targets (1.15 x, one exchange + 20 ms) are the bench's to judge on a quiet
        # machine; here only that the figures are sane, so a busy CI box does not fail
        assert 1.0 <= c["ratio"] < 2.0
        assert 0 < c["off_ms_max"] < 4 * c["off_budget_ms"]
        assert c["met"] is (c["ratio"] <= 1.15 and c["off_ms_max"] <= c["off_budget_ms"])
        assert c["bus"]["gap_violations"] == 0
    loaded = result["loaded"]
    assert (loaded["boards"], loaded["baud"], loaded["burners"]) == (2, 115200, 1)
    assert loaded["wire_ms_formula"] == two["wire_ms_formula"]
    assert 1.0 <= loaded["ratio"] < 3.0 and loaded["bus"]["gap_violations"] == 0
    assert (result["figure"], result["ratio"]) == (loaded["cycle_ms"], loaded["ratio"])
    assert result["met"] is (all(c["met"] for c in result["configs"]) and loaded["met"])
