"""A very short run of `ebshed bench reports` on each database: the result's
shape, and the rollup report equal to the raw scan (the run raises if not).
Timings are for the benchmark itself (docs/benchmarks.md), never asserted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.cli import app

REQUIRED = {"name", "figure", "baseline", "ratio", "unit", "target", "met"}
PG_SERVER = os.environ.get("EBSHED_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_small_district_gives_a_result_of_the_common_shape(backend: str, tmp_path: Path) -> None:
    out = tmp_path / "reports.json"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "reports",
            "--compounds",
            "2",
            "--sheds",
            "2",
            "--sockets",
            "3",
            "--backend",
            backend,
            "--postgres",
            PG_SERVER,
            "--repeat",
            "1",
            "--json",
            str(out),
        ],
    )
    if result.exit_code != 0 and backend == "postgresql" and os.environ.get("CI") != "true":
        pytest.skip(f"no PostgreSQL at {PG_SERVER}: {result.exception}")
    assert result.exit_code == 0, result.output
    r = json.loads(out.read_text())
    assert r.keys() >= REQUIRED
    assert (r["name"], r["unit"], r["backend"]) == ("reports", "ms", backend)
    assert isinstance(r["met"], bool)
    assert r["sessions"] > 2 * 2 * 3 * 365  # about 1.25 a socket a day
    assert r["figure"] > 0 and r["baseline"] > 0
    # the district's year: every shed in each of its 12 months; the rollups have a
    # 13th month (the last night's sessions reach into December)
    assert r["district_rows"] == 2 * 2 * 12
    assert r["district_year_ms"] > 0 and r["district_year_raw_ms"] > 0
    assert r["shed_month_rows"] == 2 * 2 * 13
