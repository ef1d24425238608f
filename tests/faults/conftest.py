"""Fixtures of the fault suite, and its figures at the end of the run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import FaultShed
from tests.faults.invariants import FIGURES


@pytest.fixture
def make_shed(tmp_path: Path) -> Iterator[Callable[..., FaultShed]]:
    """Builds a `FaultShed` in the test's directory; ended at the end of the test."""
    made: list[FaultShed] = []

    def make(**kwargs: Any) -> FaultShed:
        shed = FaultShed(tmp_path / f"shed{len(made)}", **kwargs)
        shed.workdir.mkdir(parents=True, exist_ok=True)
        made.append(shed)
        return shed.__enter__()

    yield make
    for shed in made:
        shed.__exit__(None, None, None)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("fault suite figures")
    for fig in FIGURES:
        extra = " ".join(f"{k}={v}" for k, v in fig["extra"].items())
        terminalreporter.write_line(
            f"{fig['scenario']}: sessions={fig['sessions']} kills={fig['kills']} "
            f"crashes={fig['crashes']} billed_wh={fig['billed_wh']} "
            f"truth_wh={fig['truth_wh']:.1f} max_dev_wh={fig['max_dev_wh']:.2f} "
            f"alarms={fig['alarms']} violations={len(fig['violations'])} {extra}".rstrip()
        )
