"""IC cards and monthly plans (包月) by staff: each change is sent to the sheds
as a `cards` command for that card alone, and audited.

Balances live on the sheds (a shed debits a card session locally, offline
too), so a top-up is sent as `top_up_fen` (added once, the command runs
once) to the one shed the staff name; `balance_fen` here is the total
topped up, for the record. Blocking and plans go to every shed of the
compound. Cards are per compound (docs/staff-board.md, "Cards").
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from api.access import Principal, require_compound
from api.errors import Invalid, NotFound
from api.models import AuditEntry, Card, MonthlyPlan
from api.repos import cards as card_repo
from api.repos import compounds as compound_repo
from api.repos import sheds as shed_repo
from api.schemas.staff_money import CardIn, CardView, PlanIn
from api.services import audit
from api.services.commands import enqueue_command

ROLES = ("staff",)


def _compound(db: Session, principal: Principal, compound_id: str) -> None:
    require_compound(principal, compound_id, *ROLES)
    if compound_repo.get_compound(db, compound_id) is None:
        raise NotFound(f"no compound {compound_id}", code="unknown_compound")


def card_view(db: Session, card: Card) -> CardView:
    return CardView(
        compound_id=card.compound_id,
        uid=card.uid,
        balance_fen=card.balance_fen,
        blocked=card.blocked,
        plan_until_ms=card_repo.plan_until(db, card.compound_id, card.uid),
        updated_ms=card.updated_ms,
    )


def list_cards(db: Session, principal: Principal, compound_id: str) -> list[CardView]:
    _compound(db, principal, compound_id)
    return [card_view(db, c) for c in card_repo.list_cards(db, compound_id)]


def _push(
    db: Session,
    principal: Principal,
    card: Card,
    entry: dict[str, Any],
    *,
    sheds: list[str],
    action: str,
    note: str,
    now_ms: int,
) -> list[AuditEntry]:
    target = f"card {card.uid}"
    rows = []
    for shed_id in sheds:
        command = enqueue_command(db, shed_id, "cards", {"cards": [entry]}, now_ms=now_ms)
        rows.append(audit.record(
            db, principal, action=action, target=target, now_ms=now_ms,
            compound_id=card.compound_id, shed_id=shed_id, note=note, data=entry,
            result="pending", command_id=command.id,
        ))  # fmt: skip
    if not rows:  # a compound without sheds yet: the change is kept, and audited
        rows.append(audit.record(db, principal, action=action, target=target, now_ms=now_ms,
                                 compound_id=card.compound_id, note=note, data=entry))  # fmt: skip
    return rows


def save_card(
    db: Session, principal: Principal, compound_id: str, body: CardIn, *, now_ms: int
) -> tuple[Card, list[AuditEntry]]:
    """Add a card, top it up (at one shed), block or unblock it."""
    _compound(db, principal, compound_id)
    uid = body.uid.upper()
    compound_sheds = [s.id for s in shed_repo.list_sheds(db, compound_id)]
    if body.top_up_fen and body.shed_id not in compound_sheds:
        raise Invalid("a top-up goes to one shed of the compound: give its shed_id",
                      code="top_up_needs_shed")  # fmt: skip
    card = card_repo.get_card(db, compound_id, uid, lock=True)
    action = "card_update"
    if card is None:
        action = "card_add"
        card = Card(compound_id=compound_id, uid=uid, balance_fen=0, blocked=False,
                    created_ms=now_ms, updated_ms=now_ms)  # fmt: skip
        db.add(card)
    card.balance_fen += body.top_up_fen
    if body.blocked is not None:
        card.blocked = body.blocked
    card.updated_ms = now_ms
    db.flush()
    entry: dict[str, Any] = {
        "uid": uid,
        "plan_until_ms": card_repo.plan_until(db, compound_id, uid),
        "blocked": card.blocked,
    }
    rows = _push(db, principal, card, entry, sheds=compound_sheds, action=action,
                 note=body.note, now_ms=now_ms)  # fmt: skip
    if body.top_up_fen:
        assert body.shed_id is not None
        top_up = {**entry, "top_up_fen": body.top_up_fen}
        rows += _push(db, principal, card, top_up, sheds=[body.shed_id], action="card_top_up",
                      note=body.note, now_ms=now_ms)  # fmt: skip
    return card, rows


def add_plan(
    db: Session, principal: Principal, compound_id: str, uid: str, body: PlanIn, *, now_ms: int
) -> tuple[Card, list[AuditEntry]]:
    """A monthly plan on a card: it charges without a balance until the plan ends."""
    _compound(db, principal, compound_id)
    if body.ends_ms <= body.starts_ms:
        raise Invalid("a plan ends after it starts", code="bad_plan")
    card = card_repo.get_card(db, compound_id, uid.upper(), lock=True)
    if card is None:
        raise NotFound(f"no card {uid} in compound {compound_id}", code="unknown_card")
    plan = MonthlyPlan(
        compound_id=compound_id,
        card_uid=card.uid,
        starts_ms=body.starts_ms,
        ends_ms=body.ends_ms,
        price_fen=body.price_fen,
        created_ms=now_ms,
    )
    db.add(plan)
    card.updated_ms = now_ms
    db.flush()
    entry = {"uid": card.uid, "plan_until_ms": card_repo.plan_until(db, compound_id, card.uid),
             "blocked": card.blocked}  # fmt: skip
    sheds = [s.id for s in shed_repo.list_sheds(db, compound_id)]
    note = body.note or f"plan {body.price_fen} fen"
    return card, _push(db, principal, card, entry, sheds=sheds, action="card_plan", note=note,
                       now_ms=now_ms)  # fmt: skip
