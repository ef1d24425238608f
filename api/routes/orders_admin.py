"""Staff: refunds that need attention, and refused provider notifications."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from api.deps import AdminDep, CtxDep, DbDep
from api.errors import Conflict, NotFound
from api.repos import orders as order_repo
from api.schemas.orders import RefundView, RefusedNotificationView
from api.services import refunds

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminDep])

RefundFilter = Literal["needs_staff", "pending", "processing", "success", "all"]


@router.get("/refunds")
def list_refunds(
    db: DbDep,
    status: RefundFilter = "needs_staff",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[RefundView]:
    """Newest first. `needs_staff`: failed, abnormal or closed refunds (money owed)."""
    statuses = (
        list(refunds.NEEDS_STAFF) if status == "needs_staff" else None if status == "all"
        else [status]
    )  # fmt: skip
    return [RefundView.model_validate(r) for r in order_repo.list_refunds(db, statuses, limit)]


@router.post("/refunds/{out_refund_no}/retry")
def retry_refund(
    out_refund_no: Annotated[str, Path(min_length=1, max_length=64)], db: DbDep, ctx: CtxDep
) -> RefundView:
    """Send a `failed` refund again (same out_refund_no: it still pays out at most once)."""
    now = ctx.now_ms()
    with db.begin():
        refund = order_repo.get_refund(db, out_refund_no, lock=True)
        if refund is None:
            raise NotFound(f"no refund {out_refund_no}", code="unknown_refund")
        if refund.status != "failed":
            raise Conflict(f"refund is {refund.status}, not failed", code="not_failed")
        refunds.retry_failed(db, refund, now_ms=now)
        return RefundView.model_validate(refund)


@router.get("/notifications/refused")
def refused_notifications(
    db: DbDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[RefusedNotificationView]:
    """Provider notifications answered 4xx, and why (newest first)."""
    return [
        RefusedNotificationView.model_validate(n)
        for n in order_repo.refused_notifications(db, limit)
    ]
