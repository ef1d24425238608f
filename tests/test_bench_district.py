"""`ebshed bench district`, very short: a handful of sheds on the real API and PostgreSQL.

The result's shape and that every part of the load ran, never timings (the
figures are measured by the bench itself, docs/benchmarks.md). Needs
PostgreSQL (127.0.0.1:5432 or EBSHED_TEST_POSTGRES): skipped without it,
failed in CI.
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from api.db import normalize_url
from controller.cli import app
from tests.api_db import PG_SERVER_URL, _unavailable

REQUIRED = {"name", "figure", "baseline", "ratio", "unit", "target", "met"}


@pytest.fixture
def postgres_server() -> str:
    url = make_url(normalize_url(PG_SERVER_URL))
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as err:
        _unavailable(f"no PostgreSQL at {url.render_as_string()} ({type(err).__name__})")
    finally:
        engine.dispose()
    return url.render_as_string(hide_password=False)


def test_district_bench_serves_sheds_and_reports_delivery(
    postgres_server: str, tmp_path: Path
) -> None:
    out = tmp_path / "district.json"
    args = [
        "bench",
        "district",
        "--sheds",
        "5",
        "--seconds",
        "8",
        "--clients",
        "2",
        "--commands-per-s",
        "3",
        "--postgres",
        postgres_server,
        "--json",
        str(out),
    ]
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    r = json.loads(out.read_text("utf-8"))
    assert r.keys() >= REQUIRED
    assert (r["name"], r["unit"], r["baseline"], r["ratio"]) == ("district", "ms", None, None)
    (step,) = r["steps"]
    assert step["sheds"] == 5
    # every staff command made reached its shed's long poll, and none was late by a day
    assert step["commands"] > 0
    assert step["delivered"] == step["commands"] and step["lost"] == 0
    assert 0 <= step["delivery_ms_p50"] <= step["delivery_ms_p99"] <= step["delivery_ms_max"]
    assert step["delivery_ms_max"] < 60_000
    # snapshots, records, results and staff commands all went through
    assert set(step["slowest_by_kind_ms"]) == {"live", "uplink", "result", "command"}
    assert step["records"]["applied"] > 0 and step["rejections"] == {}
    assert step["errors"] == {}
    assert step["api_cpu_pct"] > 0 and step["api_rss_mb_peak"] > 0
    assert step["api_processes"] >= 3  # uvicorn's master and its 2 workers
    assert step["client_lag_ms_max"] >= 0
    assert step["met"] is (
        step["delivery_ms_p99"] < 1000
        and step["slowest_request_ms"] <= 2000
        and step["poll_overrun_ms_max"] <= 2000
    )
    assert r["figure"] == step["delivery_ms_p99"] and r["met"] is step["met"]
    assert r["holds"] == max((s["sheds"] for s in r["steps"] if s["met"]), default=0)
    left = [p.cmdline() for p in psutil.Process().children(recursive=True)]
    assert left == []


def test_district_bench_refuses_a_bad_shed_list() -> None:
    run = CliRunner().invoke(app, ["bench", "district", "--sheds", "100,many"])
    assert run.exit_code == 2
    assert "--sheds must be shed counts" in run.output
    run = CliRunner().invoke(app, ["bench", "district", "--sheds", "0"])
    assert run.exit_code == 2
    assert "need at least one shed" in run.output
