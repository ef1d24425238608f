"""A very short run of `ebshed bench ingest`: the result's shape, every answer
and the database checked by the run itself (it raises if a record was applied
twice or lost). Timings are for the benchmark itself (docs/benchmarks.md),
never asserted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from controller.cli import app

REQUIRED = {"name", "figure", "baseline", "ratio", "unit", "target", "met"}
PG_SERVER = os.environ.get("EBSHED_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def test_a_small_ingest_gives_a_result_of_the_common_shape(tmp_path: Path) -> None:
    out = tmp_path / "ingest.json"
    args = ["bench", "ingest", "--records", "800", "--sheds", "2", "--batch", "100",
            "--workers", "1", "--clients", "2", "--postgres", PG_SERVER,
            "--json", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    if (
        result.exit_code != 0
        and os.environ.get("CI") != "true"
        and "connect" in repr(result.exception)
    ):
        pytest.skip(f"no PostgreSQL at {PG_SERVER}: {result.exception}")
    assert result.exit_code == 0, (result.output, result.exception)
    r = json.loads(out.read_text())
    assert r.keys() >= REQUIRED
    assert (r["name"], r["unit"], r["backend"]) == ("ingest", "records/s", "postgresql")
    assert isinstance(r["met"], bool)
    assert r["figure"] > 0 and r["baseline"] > 0
    assert r["ratio"] == pytest.approx(r["figure"] / r["baseline"], rel=0.01)
    # 2 sheds x 4 batches of 100: 90 new records and 10 replays each, the last closes only
    assert r["records"] == r["duplicates"] + 2 * (3 * 90 + 45)
    assert r["sessions_closed"] == r["rollup_sessions"] <= r["sessions_stored"]
    assert not [p for p in psutil.Process().children(recursive=True) if "uvicorn" in p.cmdline()]
