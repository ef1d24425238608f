"""`ebshed report`: the monthly report from the central database, as a file or
on stdout, equal to the API's; clear errors and exit codes for bad input."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from controller.cli import app
from tests.test_reports_api import shed_with_sessions

if TYPE_CHECKING:
    from tests.api_db import Api

pytest_plugins = ["tests.api_db"]


def run(db_url: str, *args: str) -> tuple[int, bytes, str]:
    runner = CliRunner()
    result = runner.invoke(app, ["report", "--database-url", db_url, *args])
    return result.exit_code, result.stdout_bytes, result.stderr


async def test_the_monthly_report_in_every_format(api: Api, db_url: str, tmp_path: Path) -> None:
    await shed_with_sessions(api)
    from_api = (
        await api.client.get(
            "/api/v1/reports/demo",
            headers=api.admin,
            params={"period": "month", "value": "2026-11"},
        )
    ).json()
    code, out, _err = run(db_url, "--compound", "demo", "--month", "2026-11", "--format", "json")
    assert code == 0
    assert json.loads(out) == from_api

    code, out, _err = run(
        db_url, "--compound", "demo", "--month", "2026-11", "--table", "sheds", "--lang", "en"
    )
    assert code == 0
    rows = list(csv.reader(io.StringIO(out.decode("utf-8-sig"))))
    assert rows[0][:4] == ["Shed", "Shed name", "Sockets", "Sessions"]
    assert rows[1][:4] == ["rep-s", "车棚 rep-s", "3", "4"]

    target = tmp_path / "nov.xlsx"
    code, _out, err = run(
        db_url, "--compound", "demo", "--month", "2026-11", "--format", "xlsx", "--out", str(target)
    )
    assert code == 0 and str(target) in err
    book = load_workbook(target, read_only=True)
    summary = {r[0]: r[1] for r in book["汇总"].iter_rows(min_row=2, values_only=True)}
    assert summary["充电次数"] == from_api["summary"]["sessions"] == 4
    assert summary["电量（千瓦时）"] == from_api["summary"]["energy_kwh"]


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["--compound", "nowhere", "--month", "2026-11"], 3, "no compound 'nowhere'"),
        (["--compound", "demo", "--month", "2026-13"], 2, "bad month '2026-13'"),
        (["--compound", "demo", "--month", "Nov 2026"], 2, "write a month as YYYY-MM"),
        (["--compound", "demo", "--month", "2026-11", "--format", "pdf"], 2, "unknown format"),
        (["--compound", "demo", "--month", "2026-11", "--table", "nope"], 2, "no table 'nope'"),
    ],
)
async def test_bad_input_exits_non_zero_with_a_clear_message(
    api: Api, db_url: str, args: list[str], exit_code: int, message: str
) -> None:
    await shed_with_sessions(api)
    code, out, err = run(db_url, *args)
    assert code == exit_code
    assert message in err
    assert out == b""


def test_an_unmigrated_database_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    code, _out, err = run(f"sqlite:///{empty}", "--compound", "demo", "--month", "2026-11")
    assert code == 3
    assert "python -m api migrate" in err and "--data-dir" in err


def test_without_a_database_it_says_where_to_point_it_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EBSHED_API_DATABASE_URL", raising=False)
    result = CliRunner().invoke(app, ["report", "--compound", "demo", "--month", "2026-11"])
    assert result.exit_code == 3
    assert "no central database at ebshed-central.sqlite" in result.stderr
    assert "--data-dir" in result.stderr and "ebshed demo --data-dir DIR" in result.stderr
    code, _out, err = run(f"sqlite:///{tmp_path / 'gone.sqlite'}", "--compound", "demo",
                          "--month", "2026-11")  # fmt: skip
    assert code == 3 and "no central database" in err
    result = CliRunner().invoke(app, ["report", "--data-dir", str(tmp_path / "no-demo"),
                                      "--compound", "demo", "--month", "2026-11"])  # fmt: skip
    assert result.exit_code == 3 and "no-demo/central.sqlite" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no empty database left behind


def test_the_report_of_a_demo_run_from_its_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    demo = subprocess.run(
        [sys.executable, "-c", "from controller.cli import app; app()",
         "demo", "--hours", "1", "--speed", "max", "--data-dir", str(data),
         "--summary-json", str(tmp_path / "out.json")],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-2000:]
    closed = json.loads((tmp_path / "out.json").read_text())["sessions_closed"]
    assert closed > 0
    with sqlite3.connect(data / "central.sqlite") as db:
        first = db.execute("SELECT min(started_ms) FROM charge_sessions").fetchone()[0]
    month = datetime.fromtimestamp(first / 1000, timezone(timedelta(hours=8))).strftime("%Y-%m")
    result = CliRunner().invoke(app, ["report", "--data-dir", str(data), "--compound", "demo",
                                      "--month", month, "--format", "json"])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout_bytes)["summary"]["sessions"] == closed


async def test_rebuild_refills_rollups_a_database_did_not_have(api: Api, db_url: str) -> None:
    """As after an upgrade: sessions are there, their rollups are not."""
    from sqlalchemy import delete

    from api.models import ReportContribution, ReportShedHour, ReportSocketDay

    await shed_with_sessions(api)
    with api.app.state.ctx.sessions.begin() as db:
        for model in (ReportSocketDay, ReportShedHour, ReportContribution):
            db.execute(delete(model))
    args = ["--compound", "demo", "--month", "2026-11", "--format", "json"]
    code, out, _err = run(db_url, *args)
    assert code == 0 and json.loads(out)["summary"]["sessions"] == 0
    code, out, err = run(db_url, *args, "--rebuild")
    assert code == 0
    assert "rebuilt from 4 closed sessions" in err
    assert json.loads(out)["summary"]["sessions"] == 4
    code, out, _err = run(db_url, *args, "--rebuild")  # again: the same, not double
    assert json.loads(out)["summary"]["sessions"] == 4
