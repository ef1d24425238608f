"""Orders, payments, refunds and refused notifications (scan-to-pay).

Row locks: `lock=True` is `SELECT ... FOR UPDATE` on PostgreSQL; on SQLite
every write transaction starts with `BEGIN IMMEDIATE` (api/db.py), which
serialises writers, so the same code is safe on both.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from api.models import (
    Command,
    NotificationLog,
    Order,
    Payment,
    Refund,
    Socket,
    Tariff,
)

# Orders that hold their socket: unpaid and not expired, or paid and not settled.
HOLDING_PAID: tuple[str, ...] = ("paid", "starting", "charging")


def get_order(db: Session, out_trade_no: str, *, lock: bool = False) -> Order | None:
    query = select(Order).where(Order.out_trade_no == out_trade_no)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.scalar(query)


def order_for_command(db: Session, command_id: str, *, lock: bool = False) -> Order | None:
    query = select(Order).where(Order.command_id == command_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.scalar(query)


def lock_socket(db: Session, shed_id: str, port: int) -> Socket | None:
    """The socket row, locked: order creation for one socket runs one at a time."""
    return db.scalar(
        select(Socket)
        .where(Socket.shed_id == shed_id, Socket.port == port)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def orders_holding_socket(db: Session, shed_id: str, port: int, now_ms: int) -> Sequence[Order]:
    """Open orders of one socket: unpaid and not yet expired, or paid and not settled."""
    return db.scalars(
        select(Order)
        .where(
            Order.shed_id == shed_id,
            Order.port == port,
            or_(
                and_(Order.status == "created", Order.expires_ms > now_ms),
                Order.status.in_(HOLDING_PAID),
            ),
        )
        .order_by(Order.created_ms)
    ).all()


def unpaid_orders_of_client(
    db: Session, *, phone: str, address: str | None, device_hash: str | None, since_ms: int
) -> int:
    """Unpaid orders made after `since_ms` (still in their hold) by this phone,
    address or device."""
    who = [Order.phone == phone]
    if address:
        who.append(Order.client_address == address[:64])
    if device_hash:
        who.append(Order.device_hash == device_hash)
    count = db.scalar(
        select(func.count())
        .select_from(Order)
        .where(Order.status == "created", Order.created_ms > since_ms, or_(*who))
    )
    return int(count or 0)


def paid_ports(db: Session, shed_id: str) -> set[int]:
    """Sockets with a paid order that has not ended yet (busy even if the shed says idle)."""
    rows = db.scalars(
        select(Order.port).where(Order.shed_id == shed_id, Order.status.in_(HOLDING_PAID))
    ).all()
    return set(rows)


def orders_of(db: Session, phone: str, user_id: int | None, limit: int) -> Sequence[Order]:
    """A resident's paid orders, newest first."""
    who = Order.phone == phone
    if user_id is not None:
        who = or_(who, Order.user_id == user_id)
    return db.scalars(
        select(Order)
        .where(who, Order.paid_fen > 0)
        .order_by(Order.created_ms.desc(), Order.out_trade_no)
        .limit(limit)
    ).all()


def orders_to_settle_with_provider(
    db: Session, now_ms: int, retry_before_ms: int, limit: int
) -> Sequence[str]:
    """Unpaid orders past their expiry, and expired ones the provider has not closed yet,
    not asked about since `retry_before_ms`."""
    return db.scalars(
        select(Order.out_trade_no)
        .where(
            or_(
                and_(Order.status == "created", Order.expires_ms <= now_ms),
                and_(Order.status == "expired", Order.provider_closed_ms.is_(None)),
            ),
            or_(Order.queried_ms.is_(None), Order.queried_ms <= retry_before_ms),
        )
        .order_by(Order.expires_ms)
        .limit(limit)
    ).all()


def starting_orders_paid_before(db: Session, paid_before_ms: int, limit: int) -> Sequence[str]:
    return db.scalars(
        select(Order.out_trade_no)
        .where(Order.status == "starting", Order.paid_ms <= paid_before_ms)
        .order_by(Order.paid_ms)
        .limit(limit)
    ).all()


# ---------------------------------------------------------------- payments


def payment_for(db: Session, out_trade_no: str) -> Payment | None:
    return db.scalar(select(Payment).where(Payment.out_trade_no == out_trade_no).limit(1))


def payment_by_ids(db: Session, notification_id: str, transaction_id: str) -> Payment | None:
    return db.scalar(
        select(Payment)
        .where(
            or_(
                Payment.notification_id == notification_id,
                Payment.transaction_id == transaction_id,
            )
        )
        .limit(1)
    )


def log_refused(
    db: Session,
    *,
    now_ms: int,
    code: str,
    detail: str,
    notification_id: str | None = None,
    event_type: str | None = None,
    out_trade_no: str | None = None,
) -> None:
    db.add(
        NotificationLog(
            received_ms=now_ms,
            code=code[:32],
            detail=detail[:256],
            notification_id=notification_id[:64] if notification_id else None,
            event_type=event_type[:32] if event_type else None,
            out_trade_no=out_trade_no[:64] if out_trade_no else None,
        )
    )


def refused_notifications(db: Session, limit: int) -> Sequence[NotificationLog]:
    return db.scalars(
        select(NotificationLog).order_by(NotificationLog.id.desc()).limit(limit)
    ).all()


# ---------------------------------------------------------------- refunds


def get_refund(db: Session, out_refund_no: str, *, lock: bool = False) -> Refund | None:
    query = select(Refund).where(Refund.out_refund_no == out_refund_no)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.scalar(query)


def refund_for(db: Session, out_trade_no: str) -> Refund | None:
    return db.scalar(
        select(Refund).where(Refund.out_trade_no == out_trade_no).order_by(Refund.created_ms)
    )


def refunds_due(db: Session, status: str, now_ms: int, limit: int) -> Sequence[str]:
    """Refunds in `status` whose next attempt (send or query) is due."""
    return db.scalars(
        select(Refund.out_refund_no)
        .where(Refund.status == status, Refund.next_attempt_ms <= now_ms)
        .order_by(Refund.next_attempt_ms)
        .limit(limit)
    ).all()


def list_refunds(db: Session, statuses: Sequence[str] | None, limit: int) -> Sequence[Refund]:
    query = select(Refund)
    if statuses:
        query = query.where(Refund.status.in_(statuses))
    return db.scalars(query.order_by(Refund.created_ms.desc()).limit(limit)).all()


# ---------------------------------------------------------------- prices


def acknowledged_tariff_command(db: Session, shed_id: str) -> Command | None:
    """The newest `tariff` command the shed carried out: the price it bills new sessions at."""
    return db.scalar(
        select(Command)
        .where(Command.shed_id == shed_id, Command.kind == "tariff", Command.result_ok.is_(True))
        .order_by(Command.seq.desc())
        .limit(1)
    )


def newest_compound_tariff(db: Session, compound_id: str) -> Tariff | None:
    return db.scalar(
        select(Tariff)
        .where(Tariff.compound_id == compound_id)
        .order_by(Tariff.created_ms.desc(), Tariff.version.desc())
        .limit(1)
    )
