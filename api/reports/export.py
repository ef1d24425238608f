"""A report as people download it: CSV (one table, or all of them one after
another), XLSX (a sheet per table, via openpyxl) and JSON.

Column headers and codes (end reason groups, weekdays, metric names) are in
the reader's language (`labels.py`); numbers stay numbers. CSV is UTF-8 with
a byte-order mark, so that Excel on a Chinese Windows opens it right.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Final

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from api.reports.labels import Lang, label, weekday
from api.reports.model import TABLES, Report, Table, Value

FORMATS: Final = ("csv", "xlsx", "json")
CSV_MEDIA: Final = "text/csv; charset=utf-8"
XLSX_MEDIA: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
JSON_MEDIA: Final = "application/json"


class UnknownTable(LookupError):
    code = "unknown_table"

    def __init__(self, name: str) -> None:
        super().__init__(f"no table {name!r}: one of {', '.join(TABLES)}")


def header(table: Table, lang: Lang) -> list[str]:
    return [_column(name, lang) for name in table.columns]


def cells(table: Table, lang: Lang) -> list[list[Value]]:
    """The rows with codes turned into words."""
    out = []
    for row in table.rows:
        shown = list(row)
        if table.name == "summary":
            shown[0] = label(str(row[0]), lang)
        elif table.name == "end_reasons":
            shown[0] = label(f"end_{row[0]}", lang)
        elif table.name == "heatmap":
            shown[0] = weekday(int(row[0]), lang)
        elif table.name == "hours":
            shown[0] = f"{int(row[0]):02d}:00"
        out.append(shown)
    return out


def _column(name: str, lang: Lang) -> str:
    if name.startswith("h") and name[1:].isdigit():
        return f"{name[1:]}:00"
    return label(name, lang)


def pick(report: Report, name: str) -> Table:
    if name not in report.tables:
        raise UnknownTable(name)
    return report.tables[name]


def title(report: Report, lang: Lang) -> str:
    return f"{report.compound_name} ({report.compound_id}) {report.period.label}"


def to_csv(report: Report, lang: Lang, table: str | None = None) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    if table is not None:
        chosen = pick(report, table)
        writer.writerow(header(chosen, lang))
        writer.writerows(cells(chosen, lang))
    else:
        writer.writerow([title(report, lang)])
        for t in report.tables.values():
            writer.writerow([])
            writer.writerow([label(t.name, lang)])
            writer.writerow(header(t, lang))
            writer.writerows(cells(t, lang))
    return buf.getvalue().encode("utf-8-sig")


def to_xlsx(report: Report, lang: Lang) -> bytes:
    book = Workbook()
    bold = Font(bold=True)
    first = True
    for t in report.tables.values():
        sheet = book.active if first else book.create_sheet()
        assert sheet is not None
        first = False
        sheet.title = label(t.name, lang)[:31]  # Excel's limit
        sheet.append(header(t, lang))
        for cell in sheet[1]:
            cell.font = bold
        for row in cells(t, lang):
            sheet.append(row)
        sheet.freeze_panes = "A2"
        for i, name in enumerate(t.columns, start=1):
            width = max(8, min(24, len(_column(name, lang)) * (2 if lang == "zh" else 1) + 2))
            sheet.column_dimensions[get_column_letter(i)].width = width
    book.properties.title = title(report, lang)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def to_json(report: Report) -> bytes:
    return json.dumps(report.to_json(), ensure_ascii=False, indent=2).encode("utf-8")


def filename(report: Report, fmt: str, table: str | None = None) -> str:
    part = f"-{table}" if table else ""
    return f"report-{report.compound_id}-{report.period.label}{part}.{fmt}"
