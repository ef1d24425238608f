"""Staff: tariffs, IC cards and monthly plans, refunds (docs/staff-board.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from api.access import PrincipalDep
from api.deps import CtxDep, DbDep
from api.schemas.board import ActionAnswer, AuditView
from api.schemas.common import ID_PATTERN
from api.schemas.orders import RefundView
from api.schemas.staff_money import (
    CardAnswer,
    CardIn,
    CardUid,
    CardView,
    PlanIn,
    RefundIn,
    TariffPublished,
    TariffPublishIn,
)
from api.services import staff_cards, staff_refunds, staff_tariffs

router = APIRouter(prefix="/staff", tags=["staff"])
CompoundPath = Annotated[str, Path(pattern=ID_PATTERN)]


@router.get("/compounds/{compound_id}/tariff")
def get_tariff(compound_id: CompoundPath, principal: PrincipalDep, db: DbDep) -> dict[str, Any]:
    """The compound's newest tariff (`{}` when it has none)."""
    row = staff_tariffs.current_tariff(db, principal, compound_id)
    return dict(row.body) if row is not None else {}


@router.post("/compounds/{compound_id}/tariff", status_code=201)
def publish_tariff(
    compound_id: CompoundPath, body: TariffPublishIn,
    principal: PrincipalDep, db: DbDep, ctx: CtxDep,
) -> TariffPublished:  # fmt: skip
    """A new version of the tariff, sent to every shed of the compound: new
    sessions are billed at it, running ones keep theirs."""
    with db.begin():
        row, entries = staff_tariffs.publish_tariff(
            db, principal, compound_id, body.tariff, body.note, now_ms=ctx.now_ms()
        )
        return TariffPublished(
            tariff=dict(row.body), audit=[AuditView.model_validate(e) for e in entries]
        )


@router.get("/compounds/{compound_id}/cards")
def list_cards(compound_id: CompoundPath, principal: PrincipalDep, db: DbDep) -> list[CardView]:
    return staff_cards.list_cards(db, principal, compound_id)


@router.post("/compounds/{compound_id}/cards")
def save_card(
    compound_id: CompoundPath, body: CardIn, principal: PrincipalDep, db: DbDep, ctx: CtxDep
) -> CardAnswer:
    """Add a card, top it up (at one shed: `shed_id`), block or unblock it."""
    with db.begin():
        card, entries = staff_cards.save_card(db, principal, compound_id, body,
                                              now_ms=ctx.now_ms())  # fmt: skip
        return CardAnswer(card=staff_cards.card_view(db, card),
                          audit=[AuditView.model_validate(e) for e in entries])  # fmt: skip


@router.post("/compounds/{compound_id}/cards/{uid}/plans")
def add_plan(
    compound_id: CompoundPath, uid: Annotated[CardUid, Path()], body: PlanIn,
    principal: PrincipalDep, db: DbDep, ctx: CtxDep,
) -> CardAnswer:  # fmt: skip
    """A monthly plan (包月) on the card, sent to every shed of the compound."""
    with db.begin():
        card, entries = staff_cards.add_plan(db, principal, compound_id, uid, body,
                                             now_ms=ctx.now_ms())  # fmt: skip
        return CardAnswer(card=staff_cards.card_view(db, card),
                          audit=[AuditView.model_validate(e) for e in entries])  # fmt: skip


@router.get("/refunds")
def refunds_needing_staff(principal: PrincipalDep, db: DbDep) -> list[RefundView]:
    """Refunds in your compounds the provider would not pay out (money owed)."""
    return [
        RefundView.model_validate(r) for r in staff_refunds.refunds_needing_staff(db, principal)
    ]


@router.post("/orders/{out_trade_no}/refund")
def manual_refund(
    out_trade_no: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{6,32}$")], body: RefundIn,
    principal: PrincipalDep, db: DbDep, ctx: CtxDep,
) -> ActionAnswer:  # fmt: skip
    """Send a failed refund again, or refund (part of) a settled order, to the
    original payment."""
    with db.begin():
        entry = staff_refunds.manual_refund(db, principal, out_trade_no, body.amount_fen,
                                            body.note, now_ms=ctx.now_ms())  # fmt: skip
        return ActionAnswer(audit=AuditView.model_validate(entry))
