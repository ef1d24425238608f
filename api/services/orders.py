"""Scan-to-pay orders: make one (or find the open one), show it, stop it.

An order is made in two steps, so that no database transaction waits on the
provider: (1) with the socket's row locked, check that it can be paid for,
that no one else holds it, and find this phone's open order or add a new one;
(2) after that commits, create the order at the provider (a safe retry: the
same fields give the same `code_url`) and store its `code_url`.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, Literal

from sqlalchemy.orm import Session

from api.errors import ApiError, Conflict, Invalid, NotFound
from api.models import ChargeSession, Command, Order
from api.repos import board as board_repo
from api.repos import commands as command_repo
from api.repos import orders as order_repo
from api.repos import sessions as session_repo
from api.repos import sheds as shed_repo
from api.schemas.orders import OrderCreated, OrderIn, OrderView, Receipt, SessionProgress
from api.services.commands import enqueue_command, new_command_id
from api.services.orders_pricing import shed_online, shed_tariff, socket_reason
from api.settings import ApiSettings

CHINA: Final = timezone(timedelta(hours=8))
# A re-scan reuses an open order only if the resident still has this long to pay it.
REUSE_MIN_LEFT_MS: Final = 60_000
MAX_DESCRIPTION: Final = 127


def new_out_trade_no(now_ms: int) -> str:
    """`EB` + the date in China + 16 random hex digits: unique, and not guessable
    (the number is what lets a phone see and stop its order)."""
    day = datetime.fromtimestamp(now_ms / 1000, CHINA).strftime("%y%m%d")
    return f"EB{day}{secrets.token_hex(8).upper()}"


def time_expire(order: Order) -> datetime:
    assert order.expires_ms is not None
    return datetime.fromtimestamp(order.expires_ms / 1000, UTC)


@dataclass(frozen=True, slots=True)
class Reservation:
    order: Order
    created: bool  # a new order (201), or the phone's open one (200)
    description: str  # what the provider shows the payer
    superseded: tuple[str, ...]  # this phone's older open orders, to be closed


def order_amount(body: OrderIn, settings: ApiSettings) -> int:
    if body.mode == "until_full":
        return settings.order_deposit_fen
    if body.amount_fen is None:
        raise Invalid("mode 'amount' needs amount_fen", code="amount_required")
    if body.amount_fen > settings.order_max_fen:
        raise Invalid(f"at most {settings.order_max_fen} fen per order", code="amount_too_large")
    return body.amount_fen


@dataclass(frozen=True, slots=True)
class Client:
    """Who asks for an order, besides the phone: for the unpaid-order limit."""

    address: str | None = None
    device_hash: str | None = None


class TooManyUnpaid(ApiError):
    status, code = 429, "too_many_unpaid"


def reserve_order(
    db: Session,
    body: OrderIn,
    phone: str,
    *,
    user_id: int | None,
    now_ms: int,
    settings: ApiSettings,
    client: Client = Client(),
) -> Reservation:
    """Step 1 (in the caller's transaction): the phone's open order, or a new one.

    An unpaid order of another phone keeps the socket only for `order_hold_s`;
    after that it gives way to the new one (`hold_lapsed`). A client (phone,
    address, device cookie) holds at most `order_unpaid_per_client` unpaid
    orders in their hold at once: one more is `429 too_many_unpaid`."""
    shed = shed_repo.get_shed(db, body.shed_id)
    if shed is None:
        raise NotFound(f"no shed {body.shed_id}", code="unknown_shed")
    socket = order_repo.lock_socket(db, shed.id, body.port)
    if socket is None:
        raise NotFound(f"no socket {body.port} in shed {shed.id}", code="unknown_socket")
    amount = order_amount(body, settings)
    holding = order_repo.orders_holding_socket(db, shed.id, body.port, now_ms)
    paid = any(o.status != "created" for o in holding)
    online = shed_online(shed, now_ms, settings)
    reason = socket_reason(socket.state, online=online, paid_order=paid)
    if reason is not None:
        raise Conflict(f"socket {body.port} cannot be paid for now: {reason}", code=reason)
    description = f"{shed.name} {body.port}号插座 充电"[:MAX_DESCRIPTION]
    superseded: list[str] = []
    hold_ms = settings.order_hold_s * 1000
    for order in holding:
        lapsed = order.status == "created" and order.created_ms + hold_ms <= now_ms
        if order.phone != phone and lapsed:  # it held the socket long enough: it gives way
            _give_way(order, "hold_lapsed", now_ms)
            superseded.append(order.out_trade_no)
            continue
        if order.status != "created" or order.phone != phone:
            raise Conflict(
                f"socket {body.port} is being paid for by someone else", code="socket_taken"
            )
        assert order.expires_ms is not None
        same = order.mode == body.mode and order.amount_fen == amount
        if same and order.expires_ms - now_ms >= REUSE_MIN_LEFT_MS:
            if user_id is not None and order.user_id is None:
                order.user_id = user_id
            return Reservation(order, False, description, ())
        # Another choice on a re-scan: this order gives way (closed at the provider later).
        _give_way(order, "superseded", now_ms)
        superseded.append(order.out_trade_no)
    unpaid = order_repo.unpaid_orders_of_client(
        db,
        phone=phone,
        address=client.address,
        device_hash=client.device_hash,
        since_ms=now_ms - hold_ms,
    )
    if unpaid >= settings.order_unpaid_per_client:
        raise TooManyUnpaid(
            f"{unpaid} unpaid orders already; pay or wait {settings.order_hold_s} s",
        )
    tariff = shed_tariff(db, shed)
    order = Order(
        out_trade_no=new_out_trade_no(now_ms),
        shed_id=shed.id,
        port=body.port,
        user_id=user_id,
        phone=phone,
        client_address=client.address and client.address[:64],
        device_hash=client.device_hash,
        amount_fen=amount,
        mode=body.mode,
        status="created",
        tariff_id=tariff.id,
        tariff_version=tariff.version,
        created_ms=now_ms,
        # Whole seconds: time_expire is sent in seconds, and a retry must send the same.
        expires_ms=(now_ms // 1000 + settings.order_expire_s) * 1000,
        updated_ms=now_ms,
        paid_fen=0,
        refund_fen=0,
    )
    db.add(order)
    db.flush()
    return Reservation(order, True, description, tuple(superseded))


def _give_way(order: Order, problem: str, now_ms: int) -> None:
    """An unpaid order stops holding its socket (closed at the provider later)."""
    order.status = "expired"
    order.problem = problem
    order.closed_ms = now_ms
    order.updated_ms = now_ms


def store_code_url(db: Session, out_trade_no: str, code_url: str, now_ms: int) -> Order | None:
    """Step 2 done: the provider has the order."""
    order = order_repo.get_order(db, out_trade_no, lock=True)
    if order is None:
        return None
    if order.code_url != code_url:
        order.code_url = code_url
        order.updated_ms = now_ms
    return order


def provider_create_failed(db: Session, out_trade_no: str, now_ms: int) -> None:
    """Step 2 failed: the order cannot be paid from here; it frees the socket.
    The expiry worker closes it at the provider in case it was made there."""
    order = order_repo.get_order(db, out_trade_no, lock=True)
    if order is not None and order.status == "created" and order.code_url is None:
        order.status = "expired"
        order.problem = "create_failed"
        order.closed_ms = now_ms
        order.updated_ms = now_ms


def order_created(order: Order, pay_url: str | None) -> OrderCreated:
    return OrderCreated(
        out_trade_no=order.out_trade_no,
        status=order.status,
        amount_fen=order.amount_fen,
        code_url=order.code_url,
        pay_url=pay_url,
        expires_ms=order.expires_ms,
    )


# ---------------------------------------------------------------- views


def get_order(db: Session, out_trade_no: str) -> Order:
    order = order_repo.get_order(db, out_trade_no)
    if order is None:
        raise NotFound(f"no order {out_trade_no}", code="unknown_order")
    return order


def order_session(db: Session, order: Order) -> ChargeSession | None:
    if order.session_id is not None:
        found = session_repo.get_session(db, order.shed_id, order.session_id)
        if found is not None:
            return found
    sessions = [s for s in session_repo.sessions_for_order(db, order.out_trade_no)
                if s.shed_id == order.shed_id]  # fmt: skip
    return sessions[-1] if sessions else None


def session_progress(
    session: ChargeSession, now_ms: int, live: Mapping[str, Any] | None = None
) -> SessionProgress:
    """Live from the shed: its checkpoints (every 60 s) carry w, energy_wh and cost_fen,
    and its live snapshot (every few seconds, `live`: the socket's entry and the
    snapshot's `taken_ms`), when newer and of this session, moves them in between."""
    data = session.data or {}
    ended = session.ended_ms is not None
    until = session.ended_ms if session.ended_ms is not None else max(now_ms, session.reported_ms)
    minutes = max(0, math.ceil((until - session.started_ms) / 60_000))
    w = data.get("w")
    cost = data.get("cost_fen")
    energy_wh = session.energy_wh
    if (
        live is not None
        and not ended
        and live.get("session") == session.id
        and type(live.get("taken_ms")) is int
        and live["taken_ms"] > (session.reported_ms or 0)
    ):
        w = live.get("w", w)
        if type(live.get("session_wh")) is int:
            energy_wh = max(energy_wh, live["session_wh"])
        if type(live.get("session_cost_fen")) is int:
            cost = max(live["session_cost_fen"], cost if type(cost) is int else 0)
    state: Literal["charging", "stopping", "ended"] = (
        "ended" if ended else "stopping" if session.stop_ms is not None else "charging"
    )
    return SessionProgress(
        state=state,
        w=0.0 if ended else float(w) if isinstance(w, int | float) else None,
        energy_wh=energy_wh,
        minutes=minutes,
        cost_fen=session.billed_fen if ended else cost if type(cost) is int else 0,
        started_ms=session.started_ms,
        ended_ms=session.ended_ms,
        end_reason=session.end_reason,
        warnings=sorted(f for f in session.flags or () if f.startswith("anomaly_")),
    )


def payable_now(order: Order, now_ms: int) -> bool:
    """Unpaid, made at the provider, and not expired: the pay page still works."""
    return (
        order.status == "created"
        and order.code_url is not None
        and order.expires_ms is not None
        and order.expires_ms > now_ms
    )


def live_reading(db: Session, order: Order) -> dict[str, Any] | None:
    """The socket's entry in the shed's newest live snapshot, with its `taken_ms`."""
    snapshot = board_repo.get_snapshot(db, order.shed_id)
    if snapshot is None or not isinstance(snapshot.data, dict):
        return None
    for port in snapshot.data.get("ports") or []:
        if isinstance(port, dict) and port.get("port") == order.port:
            return {**port, "taken_ms": snapshot.taken_ms}
    return None


def receipt_lines(lines: object, billed_fen: int) -> list[dict[str, Any]]:
    """The shed's bill lines, shown only when they add up to what was charged (a shed
    closes a session that is not charged with a `not_charged` line; docs/tariffs.md)."""
    if not isinstance(lines, list):
        return []
    found = [line for line in lines if isinstance(line, dict)]
    amounts = [line.get("amount_fen") for line in found]
    ints = [a for a in amounts if type(a) is int]
    if len(ints) != len(amounts) or sum(ints) != billed_fen:
        return []
    return found


def order_view(db: Session, order: Order, *, now_ms: int, pay_url: str | None) -> OrderView:
    session = order_session(db, order)
    receipt = None
    if order.billed_fen is not None:
        refund = order_repo.refund_for(db, order.out_trade_no)
        bill = session.bill if session is not None else None
        lines = bill.get("lines") if isinstance(bill, dict) else None
        receipt = Receipt(
            lines=receipt_lines(lines, order.billed_fen),
            billed_fen=order.billed_fen,
            refund_fen=order.refund_fen,
            refund_status=refund.status if refund is not None else None,
        )  # fmt: skip
    return OrderView(
        out_trade_no=order.out_trade_no,
        status=order.status,
        shed=order.shed_id,
        port=order.port,
        mode=order.mode,
        amount_fen=order.amount_fen,
        paid_fen=order.paid_fen,
        session=session_progress(session, now_ms, live_reading(db, order))
        if session is not None
        else None,
        receipt=receipt,
        problem=order.problem,
        pay_url=pay_url if payable_now(order, now_ms) else None,
        expires_ms=order.expires_ms,
        created_ms=order.created_ms,
    )


# ---------------------------------------------------------------- stop


def stop_order(db: Session, out_trade_no: str, *, now_ms: int) -> Command:
    """Queue a stop for the order's socket, only while the order's session runs.

    A second stop while the first has no answer returns the first command."""
    order = order_repo.get_order(db, out_trade_no, lock=True)
    if order is None:
        raise NotFound(f"no order {out_trade_no}", code="unknown_order")
    session = order_session(db, order) if order.status in ("starting", "charging") else None
    if session is None or session.ended_ms is not None:
        raise Conflict("this order has no running session", code="not_running")
    first_id = f"stop-{out_trade_no}"
    first = command_repo.get_command(db, order.shed_id, first_id)
    if first is not None and first.result_ms is None:
        return first
    return enqueue_command(
        db,
        order.shed_id,
        "stop_session",
        {"port": order.port, "reason": "resident", "order_no": order.out_trade_no},
        now_ms=now_ms,
        command_id=first_id if first is None else new_command_id(),
        actor="resident",
        note=f"order {out_trade_no}",
    )
