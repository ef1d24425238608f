"""The public money page's JSON (docs/money-page.md).

| route | who | what |
|---|---|---|
| `GET /money/{compound_id}?months=12` | anyone | month by month figures, oldest first |
| `GET /money/shed/{shed_id}` | anyone | the compound a shed belongs to (the shed page's link) |
| `PUT /money/{compound_id}/settings` | office, admin | grid price (fen/kWh), margin purpose |
| `POST /money/{compound_id}/expenses` | office, admin | an expense line with a note |
| `PUT /money/{compound_id}/meters/{shed_id}/{month}` | office, admin | a main meter reading |

Every change is in the audit log (`money_settings`, `money_expense`, `money_meter`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.access import PrincipalDep, require_compound
from api.deps import CtxDep, DbDep
from api.errors import Invalid, NotFound
from api.models import Compound
from api.schemas.common import ID_PATTERN
from api.services import consultations, money_page
from api.services.money_page import MAX_MONTHS, MoneyError

router = APIRouter(prefix="/money", tags=["money page"])

CompoundPath = Annotated[str, Path(pattern=ID_PATTERN, description="compound id")]
ShedPath = Annotated[str, Path(pattern=ID_PATTERN, description="shed id")]
MONTH_PATTERN = r"^[1-9]\d{3}-(0[1-9]|1[0-2])$"  # year 0000 is no date (it was a 500)
MonthPath = Annotated[str, Path(pattern=MONTH_PATTERN, description="2026-11")]


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grid_fen_per_kwh: int = Field(ge=1, le=money_page.MAX_GRID_FEN_PER_KWH)
    margin_for: str = Field(default="", max_length=200)


class ExpenseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    month: str = Field(pattern=MONTH_PATTERN)
    amount_fen: int = Field(ge=1, le=money_page.MAX_EXPENSE_FEN)
    note: str = Field(min_length=1, max_length=200)


class MeterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    energy_wh: int = Field(ge=0, le=money_page.MAX_METER_WH)


def _invalid(err: MoneyError) -> Exception:
    if err.code == "unknown_compound":
        return NotFound(str(err), code=err.code)
    return Invalid(str(err), code=err.code)


@router.get("/shed/{shed_id}")
def shed_compound(db: DbDep, shed_id: ShedPath) -> dict[str, str]:
    with db.begin():
        compound_id = money_page.compound_of_shed(db, shed_id)
    if compound_id is None:
        raise NotFound(f"no shed {shed_id}", code="unknown_shed")
    return {"compound_id": compound_id}


@router.get("/{compound_id}")
def get_money(
    ctx: CtxDep,
    db: DbDep,
    compound_id: CompoundPath,
    months: Annotated[int, Query(ge=1, le=MAX_MONTHS)] = 12,
) -> dict[str, Any]:
    """Public: no login. Aggregates only; nothing names a resident."""
    with db.begin():
        try:
            page = money_page.money_page(db, compound_id, now_ms=ctx.now_ms(), months=months)
        except MoneyError as err:
            raise _invalid(err) from err
        asked = [
            consultations.public_view(db, row, ctx.now_ms())
            for row in consultations.of_compound(db, compound_id)
        ]
    return page.to_json() | {"consultations": asked}


@router.put("/{compound_id}/settings")
def put_settings(
    ctx: CtxDep, db: DbDep, principal: PrincipalDep, compound_id: CompoundPath, body: SettingsIn
) -> dict[str, Any]:
    require_compound(principal, compound_id, *money_page.EDITORS)
    with db.begin():
        _known(db, compound_id)
        try:
            row = money_page.set_settings(
                db, principal, compound_id, grid_fen_per_kwh=body.grid_fen_per_kwh,
                margin_for=body.margin_for, now_ms=ctx.now_ms(),
            )  # fmt: skip
        except MoneyError as err:
            raise _invalid(err) from err
        return {"grid_fen_per_kwh": row.grid_fen_per_kwh, "margin_for": row.margin_for}


@router.post("/{compound_id}/expenses", status_code=201)
def post_expense(
    ctx: CtxDep, db: DbDep, principal: PrincipalDep, compound_id: CompoundPath, body: ExpenseIn
) -> dict[str, Any]:
    require_compound(principal, compound_id, *money_page.EDITORS)
    with db.begin():
        _known(db, compound_id)
        try:
            row = money_page.add_expense(
                db, principal, compound_id, month=body.month, amount_fen=body.amount_fen,
                note=body.note, now_ms=ctx.now_ms(),
            )  # fmt: skip
        except MoneyError as err:
            raise _invalid(err) from err
        return {"id": row.id, "month": row.month, "amount_fen": row.amount_fen, "note": row.note}


@router.put("/{compound_id}/meters/{shed_id}/{month}")
def put_meter(
    ctx: CtxDep,
    db: DbDep,
    principal: PrincipalDep,
    compound_id: CompoundPath,
    shed_id: ShedPath,
    month: MonthPath,
    body: MeterIn,
) -> dict[str, Any]:
    require_compound(principal, compound_id, *money_page.EDITORS)
    with db.begin():
        if money_page.compound_of_shed(db, shed_id) != compound_id:
            raise NotFound(f"no shed {shed_id} in compound {compound_id}", code="unknown_shed")
        try:
            row = money_page.set_meter(
                db, principal, shed_id, month=month, energy_wh=body.energy_wh, now_ms=ctx.now_ms()
            )
        except MoneyError as err:
            raise _invalid(err) from err
        return {"shed_id": shed_id, "month": month, "energy_wh": row.energy_wh}


def _known(db: Session, compound_id: str) -> None:
    if db.get(Compound, compound_id) is None:
        raise NotFound(f"no compound {compound_id}", code="unknown_compound")
