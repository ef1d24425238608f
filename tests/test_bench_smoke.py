"""Very short runs of the benchmarks: the result's shape and sane values, never timings.

The figures themselves are measured by `ebshed bench ...` (docs/benchmarks.md),
side by side in one run; a test asserts nothing about speed. Needs the real
broker (127.0.0.1:1883 or EBSHED_TEST_MQTT): skipped without one, failed in CI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil
import pytest
from typer.testing import CliRunner

from tests.brokers import mqtt_broker_address

REQUIRED = {"name", "figure", "baseline", "ratio", "unit", "target", "met"}


@pytest.fixture
def broker() -> str:
    host, port = mqtt_broker_address()
    return f"{host}:{port}"


@pytest.fixture
def no_leftover_processes() -> Any:
    """A benchmark ends every process it started (multiprocessing's resource tracker stays)."""
    yield
    left = [
        p.cmdline()
        for p in psutil.Process().children(recursive=True)
        if "resource_tracker" not in " ".join(p.cmdline())
    ]
    assert left == []


def _shape(r: dict[str, Any], name: str, unit: str) -> None:
    assert r.keys() >= REQUIRED
    assert r["name"] == name
    assert r["unit"] == unit
    assert isinstance(r["met"], bool)
    assert isinstance(r["target"], str) and r["target"]
    json.dumps(r)  # what --json writes


@pytest.mark.broker
@pytest.mark.usefixtures("no_leftover_processes")
def test_telemetry_smoke(broker: str) -> None:
    from bench.telemetry import run

    r = run(samples=2000, broker=broker, ports=20, rounds=1, sustain_s=0.5, overload_s=0.5)

    _shape(r, "telemetry", "samples/s")
    assert r["figure"] > 0 and r["baseline"] > 0
    assert r["ratio"] == pytest.approx(r["figure"] / r["baseline"], rel=0.01)
    d = r["details"]
    assert d["bare"]["published_handled"] == [[2000, 2000]]
    assert d["controller"]["published_handled"] == [[2000, 2000]]
    ctrl = d["controller"]
    assert ctrl["sessions_started"] == 20
    assert ctrl["sessions_charging_after_throughput"] == 20
    assert ctrl["bridge_counters"]["dropped"] == 0
    assert ctrl["core_discarded"] == {}
    assert d["acks_sent_by_boards"] == 20
    sustained, overload = ctrl["sustained"], ctrl["overload"]
    assert sustained["steps"][0]["published"] > 0
    assert isinstance(d["no_sample_lost_at_80_percent"], bool)
    assert overload["published"] > 0 and overload["rss_peak_mb"] > 0
    # Every sample published under overload is handled, overflowed, or lost before the bridge.
    assert overload["lost_before_bridge"] >= 0
    assert isinstance(d["memory_bounded_under_overload"], bool)
    assert len(d["load_average"]["start"]) == len(d["load_average"]["end"]) == 3


@pytest.mark.broker
@pytest.mark.usefixtures("no_leftover_processes")
def test_footprint_smoke(broker: str) -> None:
    from bench.footprint import run

    r = run(sockets=20, minutes=0.1, broker=broker, warmup_s=2.0)

    _shape(r, "footprint", "MB")
    assert r["baseline"] is None and r["ratio"] is None
    assert 0 < r["figure"] < 2000
    assert r["cpu_percent"] >= 0
    d = r["details"]
    assert d["sessions"] == {"started": 20, "refused": {}}
    assert d["sessions_open_at_end"] == 20
    assert d["samples_per_s_handled"] > 0
    assert d["controller_exit_code"] == 0
    assert r["met"] == (d["rss_met"] and d["cpu_met"])


def test_cli_writes_the_result(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`ebshed bench telemetry|footprint --json FILE` passes the options and writes the result."""
    import bench.footprint
    import bench.telemetry
    from controller.cli import app

    calls: list[tuple[str, dict[str, Any]]] = []

    def fake(name: str) -> Any:
        def run(**kwargs: Any) -> dict[str, Any]:
            calls.append((name, kwargs))
            return {
                "name": name,
                "figure": 1.0,
                "baseline": None,
                "ratio": None,
                "unit": "x",
                "target": "t",
                "met": True,
            }

        return run

    monkeypatch.setattr(bench.telemetry, "run", fake("telemetry"))
    monkeypatch.setattr(bench.footprint, "run", fake("footprint"))
    out = tmp_path / "r.json"
    runner = CliRunner()
    res = runner.invoke(app, ["bench", "telemetry", "--samples", "5", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["name"] == "telemetry"
    res = runner.invoke(app, ["bench", "footprint", "--sockets", "3", "--minutes", "0.5"])
    assert res.exit_code == 0, res.output
    assert calls == [
        ("telemetry", {"samples": 5, "broker": "127.0.0.1:1883"}),
        ("footprint", {"sockets": 3, "minutes": 0.5, "broker": "127.0.0.1:1883"}),
    ]


@pytest.mark.broker
@pytest.mark.usefixtures("no_leftover_processes")
def test_pay_start_smoke(broker: str) -> None:
    from bench.pay_start import run

    r = run(orders=3, sockets=4, broker=broker)

    _shape(r, "pay_start_latency",
           "ms (worst, notification sent -> relay command at the board)")
    d = r["details"]
    assert d["orders"] == len(d["latencies_ms"]) == 3  # every paid socket switched on
    assert 0 < d["min_ms"] <= d["median_ms"] <= d["max_ms"] == r["figure"]
    assert r["baseline"] is None and r["ratio"] is None
    assert r["met"] == (r["figure"] < 1000)
