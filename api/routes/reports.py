"""Community office reports (docs/reports.md): JSON and downloads.

Office users read the reports of their own compounds; staff of a compound
and admins may read them too. Anyone else gets 403 `not_your_compound`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from api.access import PrincipalDep, require_compound, require_role
from api.deps import CtxDep, DbDep
from api.errors import Invalid, NotFound
from api.reports import capacity, export, queries
from api.reports.model import Report, Table
from api.reports.periods import Period, PeriodError, PeriodKind, parse_period, period_of
from api.repos import compounds as compound_repo
from api.schemas.common import ID_PATTERN

router = APIRouter(prefix="/reports", tags=["reports"])

READERS = ("office", "staff")  # admin counts as every role
CompoundPath = Annotated[str, Path(pattern=ID_PATTERN, description="compound id")]
KindQuery = Annotated[PeriodKind, Query(alias="period", description="day, week, month or year")]
ValueQuery = Annotated[
    str | None,
    Query(alias="value", max_length=16, description="2026-11, 2026-W45 or 2026-11-05; default now"),
]


def load_report(
    ctx: CtxDep,
    db: DbDep,
    principal: PrincipalDep,
    compound_id: str,
    kind: PeriodKind,
    value: str | None,
) -> Report:
    require_compound(principal, compound_id, *READERS)
    try:
        period = parse_period(kind, value) if value else period_of(kind, ctx.now_ms())
    except PeriodError as err:
        raise Invalid(str(err), code=err.code) from err
    with db.begin():
        try:
            return queries.report(db, compound_id, period)
        except queries.UnknownCompound as err:
            raise NotFound(str(err), code=err.code) from err


@router.get("")
def readable_compounds(db: DbDep, principal: PrincipalDep) -> list[dict[str, str]]:
    """The compounds whose reports the caller may read."""
    require_role(principal, *READERS)
    allowed = principal.compounds(*READERS)
    with db.begin():
        rows = compound_repo.list_compounds(db)
    return [{"id": c.id, "name": c.name} for c in rows if allowed is None or c.id in allowed]


@router.get("/{compound_id}")
def get_report(
    ctx: CtxDep,
    db: DbDep,
    principal: PrincipalDep,
    compound_id: CompoundPath,
    kind: KindQuery = "month",
    value: ValueQuery = None,
) -> dict[str, Any]:
    """Every table of the report, with stable column keys (docs/reports.md)."""
    return load_report(ctx, db, principal, compound_id, kind, value).to_json()


def load_capacity(
    ctx: CtxDep,
    db: DbDep,
    principal: PrincipalDep,
    compound_id: str,
    kind: PeriodKind,
    value: str | None,
) -> tuple[Period, Table]:
    require_compound(principal, compound_id, *READERS)
    try:
        period = parse_period(kind, value) if value else period_of(kind, ctx.now_ms())
    except PeriodError as err:
        raise Invalid(str(err), code=err.code) from err
    with db.begin():
        try:
            return period, capacity.capacity_table(db, compound_id, period)
        except queries.UnknownCompound as err:
            raise NotFound(str(err), code=err.code) from err


@router.get("/{compound_id}/capacity")
def get_capacity(
    ctx: CtxDep,
    db: DbDep,
    principal: PrincipalDep,
    compound_id: CompoundPath,
    kind: KindQuery = "month",
    value: ValueQuery = None,
) -> dict[str, Any]:
    """Capacity planning (docs/reports.md): with N = 1..20 more sockets in each shed,
    how many of the period's turned-away residents would have been served."""
    period, table = load_capacity(ctx, db, principal, compound_id, kind, value)
    return {
        "compound": {"id": compound_id},
        "period": {"kind": period.kind, "label": period.label,
                   "start_ms": period.start_ms, "end_ms": period.end_ms},
        "columns": table.columns,
        "rows": table.rows,
    }  # fmt: skip


@router.get("/{compound_id}/export")
def export_report(
    ctx: CtxDep,
    db: DbDep,
    principal: PrincipalDep,
    compound_id: CompoundPath,
    kind: KindQuery = "month",
    value: ValueQuery = None,
    fmt: Annotated[Literal["csv", "xlsx", "json"], Query(alias="format")] = "csv",
    table: Annotated[str | None, Query(max_length=32, description="csv: one table")] = None,
    lang: Annotated[Literal["zh", "en"], Query()] = "zh",
) -> Response:
    """A download: CSV (one table, or all), XLSX (a sheet per table) or JSON."""
    report = load_report(ctx, db, principal, compound_id, kind, value)
    if fmt == "xlsx" or table == capacity.TABLE:
        _, plan = load_capacity(ctx, db, principal, compound_id, kind, value)
        report.tables[plan.name] = plan  # the workbook's last sheet
    if fmt == "xlsx":
        body, media = export.to_xlsx(report, lang), export.XLSX_MEDIA
    elif fmt == "json":
        body, media = export.to_json(report), export.JSON_MEDIA
    else:
        try:
            body, media = export.to_csv(report, lang, table), export.CSV_MEDIA
        except export.UnknownTable as err:
            raise Invalid(str(err), code=err.code) from err
    name = export.filename(report, fmt, table if fmt == "csv" else None)
    return Response(
        body,
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )
