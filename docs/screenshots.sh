#!/usr/bin/env bash
# The screenshots in docs/screenshots/ (shown by docs/resident-pages.md,
# docs/staff-board.md and docs/reports.md): the browser tests, run with their
# screenshots pointed here. The ordinary test run writes them to a temporary
# directory and leaves the repository as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
EBSHED_SCREENSHOTS_DIR="$PWD/docs/screenshots" .venv/bin/pytest -q \
  tests/test_web_browser.py tests/test_web_staff_browser.py tests/test_reports_browser.py "$@"
git status --short docs/screenshots
