"""Refunds by staff: the refunds that need them, and a manual refund.

A manual refund of an order either sends a failed refund again (same
`out_refund_no`, so it still pays out at most once), or, for a settled order
with nothing refunded yet, refunds `amount_fen` of what was billed (all of
it by default). It goes to the original payment, like every refund
(api/services/refunds.py), and is audited with the staff's note.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.access import Principal, require_role, require_shed
from api.errors import Conflict, NotFound
from api.models import AuditEntry, Order, Refund, Shed
from api.repos import orders as order_repo
from api.services import audit, refunds

ROLES = ("staff",)


def refunds_needing_staff(db: Session, principal: Principal, limit: int = 100) -> Sequence[Refund]:
    """Failed, abnormal or closed refunds of the principal's compounds, newest first."""
    require_role(principal, *ROLES)
    query = (
        select(Refund)
        .join(Order, Order.out_trade_no == Refund.out_trade_no)
        .join(Shed, Shed.id == Order.shed_id)
        .where(Refund.status.in_(refunds.NEEDS_STAFF))
    )
    compounds = principal.compounds(*ROLES)
    if compounds is not None:
        query = query.where(Shed.compound_id.in_(sorted(compounds)))
    return db.scalars(query.order_by(Refund.created_ms.desc()).limit(limit)).all()


def manual_refund(
    db: Session,
    principal: Principal,
    out_trade_no: str,
    amount_fen: int | None,
    note: str,
    *,
    now_ms: int,
) -> AuditEntry:
    order = order_repo.get_order(db, out_trade_no, lock=True)
    if order is None:
        raise NotFound(f"no order {out_trade_no}", code="unknown_order")
    shed = require_shed(db, principal, order.shed_id, *ROLES)
    target = f"order {out_trade_no}"
    existing = order_repo.get_refund(db, refunds.refund_no(out_trade_no), lock=True)
    if existing is not None:
        if existing.status != "failed":
            raise Conflict(f"this order's refund is {existing.status}", code="refund_exists")
        refunds.retry_failed(db, existing, now_ms=now_ms)
        action, amount = "refund_retry", existing.amount_fen
    else:
        if order.status != "closed" or order.paid_fen <= 0:
            raise Conflict(f"order is {order.status}; only a settled order can be refunded",
                           code="not_refundable")  # fmt: skip
        amount = order.paid_fen if amount_fen is None else amount_fen
        if amount > order.paid_fen:
            raise Conflict(f"{amount} fen is more than the {order.paid_fen} fen paid",
                           code="refund_too_large")  # fmt: skip
        refunds.request_refund(db, order, amount, f"staff: {note}"[:128], now_ms=now_ms)
        action = "refund"
    return audit.record(
        db, principal, action=action, target=target, now_ms=now_ms,
        compound_id=shed.compound_id, shed_id=shed.id, note=note,
        data={"amount_fen": amount, "out_refund_no": refunds.refund_no(out_trade_no)},
    )  # fmt: skip
