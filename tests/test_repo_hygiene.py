"""A test run leaves the checkout as it was, and the README says what the tests need.

- Screenshots go to a temporary directory; only docs/screenshots.sh writes the
  ones in docs/screenshots/.
- The README's headless demo writes `out.json`, which git ignores.
- Every Debian package `.ci/setup` installs is named in the README.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.browser import SCREENSHOTS_ENV, open_phone, screenshots_dir

pytest_plugins = ["tests.browser"]

ROOT = Path(__file__).resolve().parent.parent
DOCS_SHOTS = ROOT / "docs" / "screenshots"


async def test_screenshots_go_to_a_temporary_directory(
    browser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SCREENSHOTS_ENV, raising=False)
    before = {p.name: p.stat().st_mtime_ns for p in DOCS_SHOTS.glob("*.png")}
    phone = await open_phone(browser, "data:")
    await phone.page.set_content("<h1>车棚</h1>")
    path = await phone.shot("socket-page.png")  # a name the docs use
    assert path.is_file() and ROOT not in path.parents
    assert {p.name: p.stat().st_mtime_ns for p in DOCS_SHOTS.glob("*.png")} == before
    path.unlink()


def test_the_docs_script_points_the_screenshots_at_docs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(SCREENSHOTS_ENV, str(tmp_path / "shots"))
    assert screenshots_dir() == tmp_path / "shots" and (tmp_path / "shots").is_dir()
    script = (ROOT / "docs" / "screenshots.sh").read_text(encoding="utf-8")
    assert f'{SCREENSHOTS_ENV}="$PWD/docs/screenshots"' in script


def test_no_test_writes_into_docs() -> None:
    for path in sorted((ROOT / "tests").glob("*.py")):
        if path.name == Path(__file__).name:
            continue
        text = path.read_text(encoding="utf-8")
        assert '"docs" / "screenshots"' not in text, path.name
        assert "SCREENSHOTS =" not in text, path.name


def test_the_headless_summary_is_ignored_by_git() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", "out.json"], cwd=ROOT, check=False)
    assert ignored.returncode == 0, "out.json (the README's --summary-json) is not ignored"
    assert "--summary-json out.json" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_names_every_package_the_tests_need() -> None:
    setup = (ROOT / ".ci" / "setup").read_text(encoding="utf-8")
    packages = re.findall(r"need_apt\+=\(([a-z0-9.+-]+)\)", setup)
    assert {"mosquitto", "postgresql", "chromium", "victoria-metrics"} <= set(packages)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "sudo .ci/setup" in readme
    missing = [p for p in packages if p not in readme]
    assert missing == [], f"the README does not name {missing}"
    assert '"$(dirname "$0")/setup"' in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
