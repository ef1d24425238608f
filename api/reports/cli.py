"""`ebshed report`: the monthly report of a compound from the central database.

The command (controller/cli.py) only parses its options; this module opens
the database, builds the report from the rollups and renders it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

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
    engine = make_engine(database_url)
    try:
        try:
            check_schema(engine)
        except RuntimeError as err:
            raise ReportFailed(str(err), EXIT_UNKNOWN) from err
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
