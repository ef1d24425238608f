"""Consultations and the office's household list (docs/money-page.md).

| route | who | what |
|---|---|---|
| `POST /households/{compound_id}/import` | office, admin | CSV `building,unit,flat,phones` |
| `GET /households/{compound_id}` | office, admin | the list |
| `POST /consultations/{compound_id}` | office, admin | open a consultation |
| `GET /consultations/{id}` | anyone | the proposal, the live count, the status |
| `GET /consultations/{id}/mine` | a resident | their household's answer |
| `PUT /consultations/{id}/answer` | a resident | yes or no, until the close |
| `POST /consultations/{id}/apply` | staff, admin | apply a passed tariff proposal |

Answers are rate limited per user (`rate:answer:user`, 20 a minute).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.access import PrincipalDep, require_compound
from api.deps import CtxDep, DbDep
from api.errors import ApiError, Invalid, NotFound, Unauthorized
from api.models import Compound, Consultation, Household
from api.schemas.common import ID_PATTERN
from api.services import consultations as svc
from api.services.consultations import ConsultationError
from api.services.throttle import Rate, hit, rate_key

router = APIRouter(tags=["consultations"])
CompoundPath = Annotated[str, Path(pattern=ID_PATTERN, description="compound id")]
IdPath = Annotated[int, Path(ge=1, le=2**31 - 1)]
ANSWER_RATE = Rate(20, 60_000)
MAX_CSV_BYTES = 512 * 1024


class OpenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(pattern=r"^(tariff|sockets|text)$")
    title: str = Field(min_length=1, max_length=120)
    text: str = Field(default="", max_length=2000)
    closes_ms: int = Field(ge=0)
    threshold_pct: int = Field(ge=50, le=100)
    proposal: dict[str, Any] | None = None


class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answer: str = Field(pattern=r"^(yes|no)$")


def _error(err: ConsultationError) -> ApiError:
    return ApiError(str(err), code=err.code, status=err.status)


def _compound(db: Session, compound_id: str) -> None:
    if db.get(Compound, compound_id) is None:
        raise NotFound(f"no compound {compound_id}", code="unknown_compound")


def _consultation(db: Session, consultation_id: int) -> Consultation:
    row = db.get(Consultation, consultation_id)
    if row is None:
        raise NotFound(f"no consultation {consultation_id}", code="unknown_consultation")
    return row


@router.post("/households/{compound_id}/import")
async def import_households(
    request: Request, ctx: CtxDep, db: DbDep, principal: PrincipalDep, compound_id: CompoundPath
) -> dict[str, int]:
    require_compound(principal, compound_id, "office")
    raw = await request.body()
    if len(raw) > MAX_CSV_BYTES:
        raise Invalid("the CSV is too large", code="bad_csv")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Invalid("the CSV must be UTF-8", code="bad_csv") from err
    with db.begin():
        _compound(db, compound_id)
        try:
            return svc.import_households(db, principal, compound_id, text, now_ms=ctx.now_ms())
        except ConsultationError as err:
            raise _error(err) from err


@router.get("/households/{compound_id}")
def list_households(
    db: DbDep, principal: PrincipalDep, compound_id: CompoundPath
) -> list[dict[str, Any]]:
    require_compound(principal, compound_id, "office")
    with db.begin():
        rows = db.query(Household).filter(Household.compound_id == compound_id).all()
        return [
            {"building": h.building, "unit": h.unit, "flat": h.flat, "phones": h.phones}
            for h in sorted(rows, key=lambda h: (h.building, h.unit, h.flat))
        ]


@router.post("/consultations/{compound_id}", status_code=201)
def open_consultation(
    ctx: CtxDep, db: DbDep, principal: PrincipalDep, compound_id: CompoundPath, body: OpenIn
) -> dict[str, Any]:
    require_compound(principal, compound_id, "office")
    now = ctx.now_ms()
    with db.begin():
        _compound(db, compound_id)
        try:
            row = svc.open_consultation(
                db, principal, compound_id, kind=body.kind, title=body.title, text=body.text,
                closes_ms=body.closes_ms, threshold_pct=body.threshold_pct,
                proposal=body.proposal, now_ms=now,
            )  # fmt: skip
        except ConsultationError as err:
            raise _error(err) from err
        return svc.public_view(db, row, now)


@router.get("/consultations/{consultation_id}")
def get_consultation(ctx: CtxDep, db: DbDep, consultation_id: IdPath) -> dict[str, Any]:
    """Public: the proposal, the count so far (no names, no flats) and the status."""
    with db.begin():
        return svc.public_view(db, _consultation(db, consultation_id), ctx.now_ms())


@router.get("/consultations/{consultation_id}/mine")
def my_answer(db: DbDep, principal: PrincipalDep, consultation_id: IdPath) -> dict[str, Any]:
    if principal.user_id is None:
        raise Unauthorized("log in by SMS code to answer", code="unauthorized")
    with db.begin():
        row = _consultation(db, consultation_id)
        household = svc.household_for_user(db, row.compound_id, principal.user_id)
        return {
            "registered": household is not None,
            "answer": svc.my_answer(db, row, principal.user_id),
        }


@router.put("/consultations/{consultation_id}/answer")
def put_answer(
    ctx: CtxDep, db: DbDep, principal: PrincipalDep, consultation_id: IdPath, body: AnswerIn
) -> dict[str, Any]:
    if principal.user_id is None:
        raise Unauthorized("log in by SMS code to answer", code="unauthorized")
    now = ctx.now_ms()
    with db.begin():
        hit(db, {rate_key("answer", "user", str(principal.user_id)): ANSWER_RATE}, now)
    with db.begin():
        row = _consultation(db, consultation_id)
        try:
            svc.answer(db, row, principal.user_id, body.answer, now_ms=now)
        except ConsultationError as err:
            raise _error(err) from err
        return {"answer": body.answer, **svc.public_view(db, row, now)}


@router.post("/consultations/{consultation_id}/apply")
def apply(
    ctx: CtxDep, db: DbDep, principal: PrincipalDep, consultation_id: IdPath
) -> dict[str, Any]:
    now = ctx.now_ms()
    with db.begin():
        row = _consultation(db, consultation_id)
        require_compound(principal, row.compound_id, "staff")
        try:
            return svc.apply_tariff(db, principal, row, now_ms=now)
        except ConsultationError as err:
            raise _error(err) from err
