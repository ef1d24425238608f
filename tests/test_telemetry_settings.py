"""The `[telemetry]` section: defaults as documented, every bad value refused with
the key named, and the deploy files for the store."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import bench.footprint
from controller.cli import app
from controller.core.config import ConfigError
from controller.settings import TelemetrySettings, settings_from_dict
from tests.victoria import vm_binary

ROOT = Path(__file__).resolve().parents[1]
BASE: dict[str, Any] = {"shed": {"id": "tel-1"}, "boards": [{"id": "b1", "ports": [1, 2]}]}


def with_telemetry(telemetry: dict[str, Any]) -> dict[str, Any]:
    return {**BASE, "telemetry": telemetry}


def test_absent_means_off() -> None:
    assert settings_from_dict(BASE).telemetry is None


def test_the_documented_section_is_valid_and_shows_the_defaults() -> None:
    text = (ROOT / "docs" / "telemetry.md").read_text("utf-8")
    block = re.search(r"```toml\n(\[telemetry\].*?)```", text, re.S)
    assert block is not None
    documented = tomllib.loads(block.group(1))["telemetry"]
    parsed = settings_from_dict(with_telemetry(documented)).telemetry
    assert parsed == TelemetrySettings(url=documented["url"])  # every other value a default


def test_the_example_config_section_is_valid_when_uncommented() -> None:
    lines = (ROOT / "deploy" / "shed.example.toml").read_text("utf-8").splitlines()
    start = lines.index("# [telemetry]")
    block = []
    for line in lines[start:]:
        if not line.startswith("# "):
            break
        block.append(line[2:])
    section = tomllib.loads("\n".join(block))["telemetry"]
    assert settings_from_dict(with_telemetry(section)).telemetry == TelemetrySettings(
        url=section["url"]
    )


@pytest.mark.parametrize(
    ("telemetry", "where"),
    [
        ({"url": "127.0.0.1:8428"}, "telemetry.url"),
        ({}, "telemetry.url"),
        ({"url": "http://vm:8428", "interval_s": 0}, "telemetry.interval_s"),
        ({"url": "http://vm:8428", "buffer_points": 10}, "telemetry.buffer_points"),
        ({"url": "http://vm:8428", "buffer_points": 1000, "batch_points": 5000}, "telemetry"),
        ({"url": "http://vm:8428", "timeout_s": 0}, "telemetry.timeout_s"),
        ({"url": "http://vm:8428", "bucket": ""}, "telemetry.bucket"),
        ({"url": "http://vm:8428", "precision": "s"}, "telemetry.precision"),
    ],
)
def test_bad_values_are_refused_with_the_key_named(telemetry: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_dict(with_telemetry(telemetry), "shed.toml")
    assert err.value.code == "invalid_config"
    assert f"shed.toml: {where}" in str(err.value)


def test_the_scrape_config_for_victoria_metrics_is_valid() -> None:
    binary = vm_binary()
    config = ROOT / "deploy" / "vm-scrape.yml"
    checked = subprocess.run(
        [binary, f"-promscrape.config={config}", "-promscrape.config.dryRun", "-loggerLevel=ERROR"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_the_footprint_benchmark_takes_a_store_url(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def run(**kw: Any) -> dict[str, Any]:
        calls.append(kw)
        return {"name": "footprint"}

    monkeypatch.setattr(bench.footprint, "run", run)
    args = ["bench", "footprint", "--minutes", "0.5", "--telemetry", "http://127.0.0.1:8428"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert calls[0]["telemetry_url"] == "http://127.0.0.1:8428"
