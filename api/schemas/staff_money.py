"""Bodies of the staff's tariff, card, plan and refund actions."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.schemas.board import AuditView, Note
from api.schemas.common import Ms, PlainId

CardUid = Annotated[str, StringConstraints(pattern=r"^[0-9A-Fa-f]{4,20}$")]
TopUp = Annotated[int, Field(strict=True, ge=0, le=100_000)]


class TariffPublishIn(BaseModel):
    """A new version of a tariff (`version` is given by the API: the next one)."""

    model_config = ConfigDict(extra="forbid")
    tariff: dict[str, Any]
    note: Note = ""


class TariffPublished(BaseModel):
    tariff: dict[str, Any]
    audit: list[AuditView]


class CardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uid: CardUid
    top_up_fen: TopUp = 0
    shed_id: PlainId | None = Field(
        default=None, description="the shed whose card balance a top-up goes to (required then)"
    )
    blocked: bool | None = None
    note: Note = ""


class PlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    starts_ms: Ms
    ends_ms: Ms
    price_fen: TopUp
    note: Note = ""


class CardView(BaseModel):
    compound_id: str
    uid: str
    balance_fen: int = Field(description="what staff have topped up in total (sheds debit locally)")
    blocked: bool
    plan_until_ms: int | None
    updated_ms: int


class CardAnswer(BaseModel):
    card: CardView
    audit: list[AuditView]


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_fen: Annotated[int, Field(strict=True, ge=1, le=100_000)] | None = Field(
        default=None, description="for a settled order: how much of it goes back (default all)"
    )
    note: Annotated[str, StringConstraints(min_length=1, max_length=512)]
