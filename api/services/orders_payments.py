"""Money arriving, and what it starts: payment and refund notifications, the
shed's answers to a start, and the session that closes (docs/scan-to-pay.md).

Everything here runs inside one database transaction with the order row
locked (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite's `BEGIN IMMEDIATE`
serialises writers), so a payment is applied exactly once, and the start
command it causes commits with it or not at all (complaint 8).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.models import Alarm, Order, Payment
from api.payments import (
    NotificationRejected,
    OrderQuery,
    PaymentGateway,
    PaymentNotification,
    RefundNotification,
)
from api.repos import alarms as alarm_repo
from api.repos import board
from api.repos import commands as command_repo
from api.repos import orders as order_repo
from api.repos import sessions as session_repo
from api.repos import sheds as shed_repo
from api.services import audit, refunds
from api.services.commands import enqueue_command
from api.services.events import ClosedSession, CommandResulted
from api.services.orders_pricing import shed_online
from api.settings import ApiSettings

log = logging.getLogger(__name__)

Outcome = Literal["applied", "duplicate"]
STARTED: Final = ("starting", "charging", "paid")
CONFLICT: Final = "payment_conflict"  # the notification_log code and the alarm kind


class Refused(Exception):
    """A verified notification that cannot be applied (payments-v1 rule 3): 4xx, no change."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


class PaymentConflict(Refused):
    """A notification with the ids of a payment already applied but another order,
    amount or transaction (payments-v1 rule 3): refused, recorded as a conflict,
    and raised to staff as an alarm on the shed of the payment it claims to be."""

    def __init__(self, detail: str, *, applied: Payment, shed_id: str, port: int) -> None:
        super().__init__(CONFLICT, detail)
        self.applied_out_trade_no = applied.out_trade_no
        self.shed_id = shed_id
        self.port = port


@dataclass(frozen=True, slots=True)
class NotifyAnswer:
    """What to answer the provider: 204 (applied or duplicate) or 400 with a code."""

    status: int
    code: str  # "applied", "duplicate", or why it was refused

    def problem(self) -> dict[str, str]:
        return {"code": "FAIL", "message": self.code}


def start_command_id(out_trade_no: str) -> str:
    return f"start-{out_trade_no}"


def _ms(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp() * 1000)


def payable(order: Order) -> bool:
    """Can the provider still take money for it? Unpaid, and not confirmed closed there."""
    if order.status == "created":
        return True
    return order.status == "expired" and order.provider_closed_ms is None


# ---------------------------------------------------------------- payments


def handle_notification(
    sessions: sessionmaker[Session],
    gateway: PaymentGateway,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now_ms: int,
    settings: ApiSettings,
) -> NotifyAnswer:
    """The notify_url: verify and decrypt, check, apply once. Refusals are logged."""
    try:
        note = gateway.parse_notification(headers, body, now_ms // 1000)
    except NotificationRejected as err:
        log.warning("notification rejected: %s %s", err.code, err.detail)
        with sessions.begin() as db:
            order_repo.log_refused(db, now_ms=now_ms, code=err.code, detail=err.detail)
        return NotifyAnswer(400, err.code)
    for attempt in (1, 2):
        try:
            with sessions.begin() as db:
                if isinstance(note, PaymentNotification):
                    outcome = apply_payment(db, note, now_ms=now_ms, settings=settings)
                else:
                    outcome = apply_refund_notification(db, note, now_ms=now_ms, settings=settings)
            return NotifyAnswer(204, outcome)
        except Refused as refused:
            log.warning("notification %s refused: %s", note.notification_id, refused)
            with sessions.begin() as db:
                order_repo.log_refused(
                    db,
                    now_ms=now_ms,
                    code=refused.code,
                    detail=refused.detail,
                    notification_id=note.notification_id,
                    event_type=note.event_type,
                    out_trade_no=note.out_trade_no,
                )
                if isinstance(refused, PaymentConflict):
                    raise_conflict_alarm(db, refused, note.notification_id, now_ms=now_ms)
            return NotifyAnswer(400, refused.code)
        except IntegrityError:
            # A concurrent copy won the race; the second pass sees it as a duplicate.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def apply_payment(
    db: Session, note: PaymentNotification, *, now_ms: int, settings: ApiSettings
) -> Outcome:
    """Apply a verified TRANSACTION.SUCCESS once; `Refused` if it cannot be."""
    order = order_repo.get_order(db, note.out_trade_no, lock=True)
    if order is None:
        raise Refused("unknown_order", f"no order {note.out_trade_no}")
    seen = order_repo.payment_by_ids(db, note.notification_id, note.transaction_id)
    if seen is not None:
        differs = conflicting_fields(seen, note)
        if not differs:
            return "duplicate"
        claimed = order_repo.get_order(db, seen.out_trade_no) or order
        raise PaymentConflict(
            f"ids of the payment applied to {seen.out_trade_no}, but {'; '.join(differs)}",
            applied=seen,
            shed_id=claimed.shed_id,
            port=claimed.port,
        )
    if note.amount_total != order.amount_fen:
        raise Refused(
            "wrong_amount", f"amount.total {note.amount_total} != order {order.amount_fen} fen"
        )
    if not payable(order):
        raise Refused("not_payable", f"order is {order.status}")
    record_payment(
        db,
        order,
        notification_id=note.notification_id,
        transaction_id=note.transaction_id,
        amount_fen=note.amount_total,
        payer_total_fen=note.payer_total,
        success_ms=_ms(note.success_time),
        now_ms=now_ms,
        settings=settings,
    )
    return "applied"


def conflicting_fields(seen: Payment, note: PaymentNotification) -> list[str]:
    """How a notification differs from the payment applied under the same ids."""
    pairs = (
        ("out_trade_no", seen.out_trade_no, note.out_trade_no),
        ("transaction_id", seen.transaction_id, note.transaction_id),
        ("amount.total", seen.amount_fen, note.amount_total),
    )
    return [f"{name} {new} != {old}" for name, old, new in pairs if old != new]


def raise_conflict_alarm(
    db: Session, conflict: PaymentConflict, notification_id: str, *, now_ms: int
) -> None:
    """One active `payment_conflict` alarm per conflicting notification (the provider
    resends a refused one for a day: each copy is logged, the alarm is raised once)."""
    alarm_id = f"pay-conflict-{notification_id}"[:64]
    log.error("payment conflict on order %s: %s; needs staff",
              conflict.applied_out_trade_no, conflict.detail)  # fmt: skip
    if alarm_repo.get_alarm(db, conflict.shed_id, alarm_id) is not None:
        return
    db.add(
        Alarm(
            shed_id=conflict.shed_id, id=alarm_id, kind=CONFLICT, raised_ms=now_ms,
            detail=f"支付冲突 payment conflict: notification {notification_id}: "
            f"{conflict.detail}"[:256],
            port=conflict.port, bay=None, board=None, sensor=None, active=True,
            acked_ms=None, acked_by=None, note=None, cleared_ms=None,
            reported_ms=now_ms, updated_ms=now_ms, ack_command_id=None,
        )
    )  # fmt: skip
    board.bump(db, conflict.shed_id, now_ms)


def apply_paid_query(
    db: Session, query: OrderQuery, *, now_ms: int, settings: ApiSettings
) -> Outcome | None:
    """The provider says, when asked, that an order is paid (its notification never
    came): apply it as the notification would have. None if it cannot be applied."""
    order = order_repo.get_order(db, query.out_trade_no, lock=True)
    if order is None or query.transaction_id is None:
        return None
    seen = order_repo.payment_by_ids(db, f"query-{query.transaction_id}", query.transaction_id)
    if seen is not None:
        return "duplicate"
    if query.amount_fen != order.amount_fen or not payable(order):
        log.error(
            "order %s: the provider says paid (%s fen) but it is %s for %s fen; needs staff",
            order.out_trade_no, query.amount_fen, order.status, order.amount_fen,
        )  # fmt: skip
        order_repo.log_refused(
            db,
            now_ms=now_ms,
            code="query_mismatch",
            detail=f"query says paid {query.amount_fen} fen; order {order.status}",
            out_trade_no=order.out_trade_no,
        )
        return None
    record_payment(
        db,
        order,
        notification_id=f"query-{query.transaction_id}"[:64],
        transaction_id=query.transaction_id,
        amount_fen=query.amount_fen,
        payer_total_fen=query.payer_total,
        success_ms=_ms(query.success_time),
        now_ms=now_ms,
        settings=settings,
    )
    return "applied"


def record_payment(
    db: Session,
    order: Order,
    *,
    notification_id: str,
    transaction_id: str,
    amount_fen: int,
    payer_total_fen: int | None,
    success_ms: int | None,
    now_ms: int,
    settings: ApiSettings,
) -> None:
    """The money is in: start the socket, or refund it all if it cannot start."""
    db.add(
        Payment(
            notification_id=notification_id,
            out_trade_no=order.out_trade_no,
            transaction_id=transaction_id,
            trade_state="SUCCESS",
            amount_fen=amount_fen,
            payer_total_fen=payer_total_fen,
            success_ms=success_ms,
            received_ms=now_ms,
        )
    )
    db.flush()
    audit.record_money(
        db, actor="provider", action="payment", out_trade_no=order.out_trade_no,
        shed_id=order.shed_id, amount_fen=amount_fen, now_ms=now_ms,
        transaction_id=transaction_id,
    )  # fmt: skip
    order.paid_fen = amount_fen
    order.paid_ms = now_ms
    order.updated_ms = now_ms
    if order.status == "expired":
        # Paid at the last moment, or an order replaced by a re-scan: never started.
        gave_way = "superseded" if order.problem == "superseded" else "expired"
        refunds.full_refund(db, order, f"paid_{gave_way}", now_ms=now_ms)
        return
    shed = shed_repo.get_shed(db, order.shed_id)
    if shed is None or not shed_online(shed, now_ms, settings):
        refunds.full_refund(db, order, "shed_offline", now_ms=now_ms)
        return
    command = enqueue_command(
        db,
        order.shed_id,
        "start_session",
        {
            "port": order.port,
            "order_no": order.out_trade_no,
            "prepaid_fen": amount_fen,
            "mode": order.mode,
        },
        now_ms=now_ms,
        command_id=start_command_id(order.out_trade_no),
        actor="payment",
        note=f"order {order.out_trade_no}",
    )
    order.command_id = command.id
    order.status = "starting"


# ---------------------------------------------------------------- refund notifications


def apply_refund_notification(
    db: Session, note: RefundNotification, *, now_ms: int, settings: ApiSettings
) -> Outcome:
    refund = order_repo.get_refund(db, note.out_refund_no, lock=True)
    if refund is None:
        raise Refused("unknown_refund", f"no refund {note.out_refund_no}")
    if refund.out_trade_no != note.out_trade_no:
        raise Refused("refund_mismatch", f"refund is for {refund.out_trade_no}")
    if note.amount_refund != refund.amount_fen:
        raise Refused(
            "wrong_amount", f"amount.refund {note.amount_refund} != {refund.amount_fen} fen"
        )
    return refunds.apply_refund_status(
        db,
        refund,
        note.refund_status,
        now_ms=now_ms,
        refund_id=note.refund_id,
        query_after_ms=settings.refund_query_after_s * 1000,
    )


# ---------------------------------------------------------------- hooks (shed events)


def on_start_result(db: Session, event: CommandResulted) -> None:
    """Hook `command_result`: the shed started the order's session, or refused."""
    command = event.command
    if command.kind != "start_session":
        return
    order = order_repo.order_for_command(db, command.id, lock=True)
    if order is None:
        return
    _apply_start_result(db, order, event.now_ms)


def _apply_start_result(db: Session, order: Order, now_ms: int) -> None:
    command = (
        command_repo.get_command(db, order.shed_id, order.command_id) if order.command_id else None
    )
    if command is None or command.result_ms is None:
        return
    if order.status == "starting":
        if command.result_ok:
            session_id = (command.result_data or {}).get("session_id")
            order.session_id = session_id if isinstance(session_id, str) else order.session_id
            order.status = "charging"
            order.updated_ms = now_ms
        else:
            code = command.result_code or "refused"
            refunds.full_refund(db, order, f"start_refused:{code}", now_ms=now_ms)
        return
    if command.result_ok and order.problem == "start_timeout" and order.billed_fen == 0:
        # The start came through after we gave up on it and refunded everything:
        # stop that session rather than charge for it twice or give it away.
        log.warning("order %s started after its refund; stopping port %s",
                    order.out_trade_no, order.port)  # fmt: skip
        enqueue_command(
            db,
            order.shed_id,
            "stop_session",
            {"port": order.port, "reason": "order_refunded", "order_no": order.out_trade_no},
            now_ms=now_ms,
            actor="api",
            note=f"order {order.out_trade_no} started after its refund",
        )


def on_session_closed(db: Session, closed: ClosedSession) -> None:
    """Hook `session_closed`: bill the order from the shed's record, refund the rest."""
    session = closed.session
    if session.order_no is None:
        return
    order = order_repo.get_order(db, session.order_no, lock=True)
    if order is None or order.shed_id != closed.shed_id:
        return
    if order.status not in STARTED:
        log.warning("session %s closed for order %s in status %s: not billed again",
                    session.id, order.out_trade_no, order.status)  # fmt: skip
        return
    billed = session.billed_fen
    if billed > order.paid_fen:
        log.error("order %s: the shed billed %s fen of %s paid; capped",
                  order.out_trade_no, billed, order.paid_fen)  # fmt: skip
        billed = order.paid_fen
    order.session_id = session.id
    order.closed_ms = closed.now_ms
    refunds.request_refund(db, order, order.paid_fen - billed, "unused", now_ms=closed.now_ms)


def check_start_timeout(db: Session, out_trade_no: str, *, now_ms: int, timeout_ms: int) -> bool:
    """A paid start without a result after `timeout_ms`: refund it all. True if refunded."""
    order = order_repo.get_order(db, out_trade_no, lock=True)
    if order is None or order.status != "starting" or order.paid_ms is None:
        return False
    if order.paid_ms > now_ms - timeout_ms:
        return False
    _apply_start_result(db, order, now_ms)  # a result the hook did not see
    if order.status != "starting":
        return False
    found = session_repo.sessions_for_order(db, order.out_trade_no)
    if found:  # the session runs; its result is just late
        order.status = "charging"
        order.session_id = found[-1].id
        order.updated_ms = now_ms
        return False
    refunds.full_refund(db, order, "start_timeout", now_ms=now_ms)
    return True
