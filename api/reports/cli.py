"""`ebshed report`: the monthly report of a compound from the central database.

The command (controller/cli.py) only parses its options; this module opens
the database, builds the report from the rollups and renders it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from sqlalchemy.engine import make_url

from api.db import check_schema, make_engine, make_sessionmaker
from api.reports import export, queries, rollups
from api.reports.labels import Lang
from api.reports.periods import PeriodError, month


class ReportFailed(Exception):
    """A message for the command line, and its exit code."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


EXIT_UNKNOWN: Final = 3
WHERE_HINT: Final = (
    "Point --database-url (or EBSHED_API_DATABASE_URL) at the central API's database, "
    "or --data-dir at the data dir of a demo run with `ebshed demo --data-dir DIR` "
    "(its central.sqlite)"
)


def demo_database_url(data_dir: Path) -> str:
    """The central database a demo run with `--data-dir` keeps (simulators/central.py)."""
    return f"sqlite:///{data_dir / 'central.sqlite'}"


def missing_sqlite_file(database_url: str) -> Path | None:
    """The file of a file-backed SQLite URL when it does not exist (else None)."""
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        return None
    path = Path(url.database)
    return None if path.is_file() else path


def monthly_report(
    database_url: str,
    compound_id: str,
    month_text: str,
    fmt: str,
    lang: Lang,
    table: str | None = None,
    *,
    rebuild_first: bool = False,
    log: Callable[[str], None] = lambda _line: None,
) -> bytes:
    if fmt not in export.FORMATS:
        raise ReportFailed(f"unknown format {fmt!r}: one of {', '.join(export.FORMATS)}")
    try:
        period = month(month_text.strip())
    except ValueError as err:
        raise ReportFailed(f"bad month {month_text!r}: {err} [{PeriodError.code}]") from err
    if table is not None and fmt != "csv":
        raise ReportFailed("--table goes with --format csv (XLSX and JSON hold every table)")
    missing = missing_sqlite_file(database_url)
    if missing is not None:  # opening it would leave an empty database behind
        raise ReportFailed(f"no central database at {missing}. {WHERE_HINT}", EXIT_UNKNOWN)
    engine = make_engine(database_url)
    try:
        try:
            check_schema(engine)
        except RuntimeError as err:
            raise ReportFailed(f"{err}. {WHERE_HINT}", EXIT_UNKNOWN) from err
        sessions = make_sessionmaker(engine)
        if rebuild_first:
            with sessions.begin() as db:
                queries.compound_sheds(db, compound_id)  # UnknownCompound before any change
                counted = rollups.rebuild(db, compound_id, int(time.time() * 1000))
            log(f"rollups of {compound_id} rebuilt from {counted} closed sessions")
        with sessions() as db:
            report = queries.report(db, compound_id, period)
    except queries.UnknownCompound as err:
        raise ReportFailed(f"{err} [{err.code}]", EXIT_UNKNOWN) from err
    finally:
        engine.dispose()
    if fmt == "xlsx":
        return export.to_xlsx(report, lang)
    if fmt == "json":
        return export.to_json(report)
    try:
        return export.to_csv(report, lang, table)
    except export.UnknownTable as err:
        raise ReportFailed(f"{err} [{err.code}]") from err
