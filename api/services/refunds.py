"""Refunds of scan-to-pay orders: always to the original payment (complaint 6).

A refund is first recorded as `pending` inside the transaction that decided
it (a session closed with money left, a start refused or timed out, a shed
offline when paid), so the decision and the money owed commit together. The
refund sender (api/services/orders_workers.py) then calls the provider after
the commit, with retries; its `out_refund_no` is derived from the order
(`R{out_trade_no}`), so a retried refund is refunded at most once.

Statuses: pending -> processing -> success; a refund the provider refuses is
`failed`, one that ends ABNORMAL or CLOSED keeps that status. Those three
need staff: the order becomes `failed` and an alarm `refund_failed` is raised
for its shed, so the money owed is never silently lost.

Money: per order, paid_fen = billed_fen + refund_fen, to the fen.
"""

from __future__ import annotations

import logging
from typing import Final, Literal

from sqlalchemy.orm import Session

from api.models import Alarm, Order, Refund
from api.payments.models import RefundStatus
from api.repos import alarms
from api.repos import orders as order_repo
from api.services import audit

log = logging.getLogger(__name__)

NEEDS_STAFF: Final = ("failed", "abnormal", "closed")
KICK_KEY: Final = "ebshed.kick_refunds"
RETRY_FIRST_MS: Final = 5_000
RETRY_MAX_MS: Final = 600_000
Outcome = Literal["applied", "duplicate"]


def refund_no(out_trade_no: str) -> str:
    """One refund per order at most, so its number follows from the order's."""
    return f"R{out_trade_no}"


def kick_after_commit(db: Session) -> None:
    """Ask the refund sender to run once `db` commits (see orders_workers)."""
    db.info[KICK_KEY] = True


def request_refund(
    db: Session, order: Order, amount_fen: int, reason: str, *, now_ms: int
) -> Refund | None:
    """Owe `amount_fen` of a (locked) paid order back; None if nothing is owed.

    Sets the order's bill (`billed_fen = paid_fen - amount_fen`) and status
    `refunding`. A second call for the same order returns the first refund.
    """
    existing = order_repo.get_refund(db, refund_no(order.out_trade_no))
    if existing is not None:
        return existing
    if not 0 <= amount_fen <= order.paid_fen:
        raise ValueError(f"refund {amount_fen} of a payment of {order.paid_fen} fen")
    order.refund_fen = amount_fen
    order.billed_fen = order.paid_fen - amount_fen
    order.updated_ms = now_ms
    if amount_fen == 0:
        order.status = "closed"
        order.closed_ms = order.closed_ms or now_ms
        return None
    order.status = "refunding"
    refund = Refund(
        out_refund_no=refund_no(order.out_trade_no),
        out_trade_no=order.out_trade_no,
        amount_fen=amount_fen,
        status="pending",
        reason=reason[:128],
        created_ms=now_ms,
        attempts=0,
        next_attempt_ms=now_ms,
    )
    db.add(refund)
    db.flush()
    audit.record_money(
        db, actor="api", action="refund", out_trade_no=order.out_trade_no,
        shed_id=order.shed_id, amount_fen=amount_fen, now_ms=now_ms, result="pending",
        out_refund_no=refund.out_refund_no, reason=reason[:128],
    )  # fmt: skip
    kick_after_commit(db)
    log.info("refund %s: %s fen of order %s (%s)", refund.out_refund_no, amount_fen,
             order.out_trade_no, reason)  # fmt: skip
    return refund


def full_refund(db: Session, order: Order, problem: str, *, now_ms: int) -> Refund | None:
    """The whole payment goes back: the socket never powered on for it (complaint 5)."""
    order.problem = problem[:64]
    return request_refund(db, order, order.paid_fen, problem, now_ms=now_ms)


def apply_refund_status(
    db: Session,
    refund: Refund,
    status: RefundStatus,
    *,
    now_ms: int,
    refund_id: str | None = None,
    query_after_ms: int = 300_000,
) -> Outcome:
    """What the provider says about a (locked) refund, from an answer, a query or
    a notification. Applied once: a repeat changes nothing."""
    if refund_id:
        refund.refund_id = refund_id
    if status is RefundStatus.SUCCESS:
        if refund.status == "success":
            return "duplicate"
        had_failed = refund.status in NEEDS_STAFF
        refund.status = "success"
        refund.done_ms = now_ms
        refund.next_attempt_ms = None
        refund.sent_ms = refund.sent_ms or now_ms
        order = order_repo.get_order(db, refund.out_trade_no, lock=True)
        if order is not None:
            audit.record_money(
                db, actor="provider", action="refund_paid", out_trade_no=order.out_trade_no,
                shed_id=order.shed_id, amount_fen=refund.amount_fen, now_ms=now_ms,
                out_refund_no=refund.out_refund_no,
            )  # fmt: skip
        if order is not None and order.status in ("refunding", "failed"):
            order.status = "refunded"
            order.closed_ms = order.closed_ms or now_ms
            order.updated_ms = now_ms
        if had_failed:
            _clear_alarm(db, refund, now_ms)
        return "applied"
    if status is RefundStatus.PROCESSING:
        if refund.status != "pending":
            return "duplicate"
        refund.status = "processing"
        refund.sent_ms = now_ms
        refund.last_error = None
        refund.next_attempt_ms = now_ms + query_after_ms  # query if no notification by then
        return "applied"
    # ABNORMAL or CLOSED: the provider gave up on it.
    if refund.status not in ("pending", "processing"):
        return "duplicate"
    mark_failed(db, refund, status.value.lower(), f"the provider says {status.value}", now_ms)
    return "applied"


def mark_failed(db: Session, refund: Refund, status: str, detail: str, now_ms: int) -> None:
    """A refund that will not pay out by itself: flag the order and alarm the staff."""
    refund.status = status
    refund.done_ms = now_ms
    refund.next_attempt_ms = None
    refund.last_error = detail[:256]
    order = order_repo.get_order(db, refund.out_trade_no, lock=True)
    if order is None:
        return
    order.status = "failed"
    order.updated_ms = now_ms
    audit.record_money(
        db, actor="provider", action="refund_failed", out_trade_no=order.out_trade_no,
        shed_id=order.shed_id, amount_fen=refund.amount_fen, now_ms=now_ms, result="failed",
        out_refund_no=refund.out_refund_no, why=detail[:128],
    )  # fmt: skip
    log.error("refund %s of order %s FAILED (%s): %s fen owed to the payer; needs staff",
              refund.out_refund_no, order.out_trade_no, detail, refund.amount_fen)  # fmt: skip
    alarm_id = f"refund-{refund.out_refund_no}"[:64]
    alarm = alarms.get_alarm(db, order.shed_id, alarm_id)
    if alarm is None:
        alarm = Alarm(shed_id=order.shed_id, id=alarm_id)
        db.add(alarm)
    alarm.kind = "refund_failed"
    alarm.raised_ms = now_ms
    alarm.detail = (
        f"退款失败 refund failed: {refund.amount_fen} fen of order {order.out_trade_no} ({detail})"
    )[:256]
    alarm.port = order.port
    alarm.active = True
    alarm.cleared_ms = None
    alarm.reported_ms = now_ms
    alarm.updated_ms = now_ms


def retry_later(refund: Refund, error: str, now_ms: int) -> None:
    """The provider could not be reached: send the same refund again later."""
    refund.attempts += 1
    delay = min(RETRY_FIRST_MS * 2 ** (refund.attempts - 1), RETRY_MAX_MS)
    refund.next_attempt_ms = now_ms + delay
    refund.last_error = error[:256]


def _clear_alarm(db: Session, refund: Refund, now_ms: int) -> None:
    order = order_repo.get_order(db, refund.out_trade_no)
    if order is None:
        return
    alarm = alarms.get_alarm(db, order.shed_id, f"refund-{refund.out_refund_no}"[:64])
    if alarm is not None and alarm.active:
        alarm.active = False
        alarm.cleared_ms = now_ms
        alarm.updated_ms = now_ms


def retry_failed(db: Session, refund: Refund, *, now_ms: int) -> None:
    """Staff send a `failed` refund again, with the same out_refund_no."""
    refund.status = "pending"
    refund.next_attempt_ms = now_ms
    refund.done_ms = None
    _clear_alarm(db, refund, now_ms)
    order = order_repo.get_order(db, refund.out_trade_no, lock=True)
    if order is not None and order.status == "failed":
        order.status = "refunding"
        order.updated_ms = now_ms
    kick_after_commit(db)
