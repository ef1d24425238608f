"""Database tables of the central API (SQLAlchemy 2, typed).

Conventions: times are integer milliseconds since the Unix epoch (`*_ms`),
money is integer fen (`*_fen`), ids that sheds or payment providers give us
are strings. Every change to these classes needs an Alembic migration
(`api/migrations/`); a test fails when the two disagree.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import false
from sqlalchemy.types import TypeEngine

# Named constraints, so that migrations can refer to them (and SQLite batch
# migrations can rebuild tables) the same way on every database.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSON documents: JSONB on PostgreSQL (indexable, compact), JSON text elsewhere.
Json: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")

ID_LEN: Final = 32  # compound and shed ids: [a-z0-9-]{1,32}
REF_LEN: Final = 64  # ids sheds and providers give us (sessions, alarms, records)
TRADE_NO_LEN: Final = 32  # out_trade_no: 6..32 of [A-Za-z0-9_-]

ORDER_STATUSES: Final = (
    "created",
    "paid",
    "starting",
    "charging",
    "closed",
    "refunding",
    "refunded",
    "failed",
    "expired",
)
ORDER_MODES: Final = ("until_full", "amount")
# pending: to be sent; processing: accepted by the provider; success: money back;
# abnormal / closed (the provider's end states) and failed (refused) need staff.
REFUND_STATUSES: Final = ("pending", "processing", "success", "abnormal", "closed", "failed")
ROLES: Final = ("resident", "staff", "office", "admin")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# ---------------------------------------------------------------- tenants and sheds


class Compound(Base):
    """A residential compound (小区): the tenant everything else belongs to."""

    __tablename__ = "compounds"
    id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Shed(Base):
    __tablename__ = "sheds"
    id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    compound_id: Mapped[str] = mapped_column(ForeignKey("compounds.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    # sha256 hex of the shed token; the token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    last_seen_ms: Mapped[int | None] = mapped_column(BigInteger)
    # Highest command seq issued to this shed. Bumped (row-locked) by every
    # enqueue, so seqs commit in order; long polls watch it.
    command_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The tariff the shed reports it bills new sessions at (a `tariff` uplink record,
    # sent at start and on every change), and when it arrived (central clock).
    tariff: Mapped[dict[str, Any] | None] = mapped_column(Json)
    tariff_received_ms: Mapped[int | None] = mapped_column(BigInteger)


class Socket(Base):
    __tablename__ = "sockets"
    shed_id: Mapped[str] = mapped_column(ForeignKey("sheds.id"), primary_key=True)
    port: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # controller.core.fsm.State values
    since_ms: Mapped[int] = mapped_column(BigInteger)
    disabled_reason: Mapped[str | None] = mapped_column(String(128))
    session_id: Mapped[str | None] = mapped_column(String(REF_LEN))
    power_w: Mapped[float | None] = mapped_column(Double)
    reported_ms: Mapped[int | None] = mapped_column(BigInteger)  # the record's ts on the shed
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class Bay(Base):
    __tablename__ = "bays"
    shed_id: Mapped[str] = mapped_column(ForeignKey("sheds.id"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    port: Mapped[int | None] = mapped_column(Integer)  # the socket next to it, if any
    occupied: Mapped[bool] = mapped_column(Boolean)
    since_ms: Mapped[int] = mapped_column(BigInteger)
    reported_ms: Mapped[int | None] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class Tariff(Base):
    """A posted price, versioned: (id, version) never changes once stored.

    `body` is `controller.core.tariffs.tariff_to_dict(...)`. A session is billed
    under the tariff it started with: the session row keeps its own copy.
    """

    __tablename__ = "tariffs"
    id: Mapped[str] = mapped_column(String(REF_LEN), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    compound_id: Mapped[str | None] = mapped_column(ForeignKey("compounds.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    body: Mapped[dict[str, Any]] = mapped_column(Json)
    created_ms: Mapped[int] = mapped_column(BigInteger)


# ---------------------------------------------------------------- records from sheds


class ChargeSession(Base):
    """A charging session as the shed reported it (highest version applied)."""

    __tablename__ = "charge_sessions"
    __table_args__ = (Index(None, "shed_id", "ended_ms"),)
    shed_id: Mapped[str] = mapped_column(ForeignKey("sheds.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(REF_LEN), primary_key=True)
    port: Mapped[int] = mapped_column(Integer)
    auth_kind: Mapped[str] = mapped_column(String(16))  # order, card, plan
    auth_ref: Mapped[str] = mapped_column(String(REF_LEN))
    auth_mode: Mapped[str] = mapped_column(String(16))
    prepaid_fen: Mapped[int | None] = mapped_column(BigInteger)
    order_no: Mapped[str | None] = mapped_column(String(REF_LEN), index=True)
    tariff_id: Mapped[str | None] = mapped_column(String(REF_LEN))
    tariff_version: Mapped[int | None] = mapped_column(Integer)
    tariff: Mapped[dict[str, Any] | None] = mapped_column(Json)
    started_ms: Mapped[int] = mapped_column(BigInteger)
    stop_ms: Mapped[int | None] = mapped_column(BigInteger)
    ended_ms: Mapped[int | None] = mapped_column(BigInteger)
    end_reason: Mapped[str | None] = mapped_column(String(32))
    first_wh: Mapped[int | None] = mapped_column(BigInteger)
    last_wh: Mapped[int | None] = mapped_column(BigInteger)
    energy_wh: Mapped[int] = mapped_column(BigInteger)
    peak_w: Mapped[float] = mapped_column(Double)
    billed_fen: Mapped[int] = mapped_column(BigInteger)
    refund_fen: Mapped[int] = mapped_column(BigInteger)
    flags: Mapped[list[str]] = mapped_column(Json)
    bill: Mapped[dict[str, Any] | None] = mapped_column(Json)
    data: Mapped[dict[str, Any]] = mapped_column(Json)  # everything the shed sent
    version: Mapped[int] = mapped_column(BigInteger)
    reported_ms: Mapped[int] = mapped_column(BigInteger)
    received_ms: Mapped[int] = mapped_column(BigInteger)
    # Set by the session-closed hook when the closing record was applied.
    closed_received_ms: Mapped[int | None] = mapped_column(BigInteger)


class Alarm(Base):
    __tablename__ = "alarms"
    __table_args__ = (Index(None, "shed_id", "active"),)
    shed_id: Mapped[str] = mapped_column(ForeignKey("sheds.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(REF_LEN), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    raised_ms: Mapped[int] = mapped_column(BigInteger)
    detail: Mapped[str] = mapped_column(String(256))
    port: Mapped[int | None] = mapped_column(Integer)
    bay: Mapped[int | None] = mapped_column(Integer)
    board: Mapped[str | None] = mapped_column(String(REF_LEN))
    sensor: Mapped[str | None] = mapped_column(String(REF_LEN))
    active: Mapped[bool] = mapped_column(Boolean)
    acked_ms: Mapped[int | None] = mapped_column(BigInteger)
    acked_by: Mapped[str | None] = mapped_column(String(REF_LEN))
    note: Mapped[str | None] = mapped_column(String(512))
    cleared_ms: Mapped[int | None] = mapped_column(BigInteger)
    reported_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    # The `ack_alarm` command sent to the shed for this alarm, while the shed's
    # acknowledged record has not come back (the staff board shows it as sent).
    ack_command_id: Mapped[str | None] = mapped_column(String(40))


class LiveSnapshot(Base):
    """The newest live readings of a shed (docs/uplink-contract.md, "Live snapshots"):
    every socket's state, power, session energy, temperature and relay, and the bays.
    One row per shed, replaced by each newer snapshot; never history."""

    __tablename__ = "live_snapshots"
    shed_id: Mapped[str] = mapped_column(ForeignKey("sheds.id"), primary_key=True)
    taken_ms: Mapped[int] = mapped_column(BigInteger)  # on the shed's clock
    received_ms: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any]] = mapped_column(Json)


class BoardMark(Base):
    """A counter per shed, bumped in every transaction that changes what the staff
    board shows of it (records, live snapshots, alarms, acknowledgements). Board
    streams in every worker watch it (api/services/board_watch.py)."""

    __tablename__ = "board_marks"
    shed_id: Mapped[str] = mapped_column(ForeignKey("sheds.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    changed_ms: Mapped[int] = mapped_column(BigInteger)


class RecordVersion(Base):
    """Highest version applied per (shed, kind, key): what makes the uplink idempotent."""

    __tablename__ = "record_versions"
    shed_id: Mapped[str] = mapped_column(ForeignKey("sheds.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(REF_LEN), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    record_id: Mapped[str | None] = mapped_column(String(REF_LEN))
    applied_ms: Mapped[int] = mapped_column(BigInteger)


# ---------------------------------------------------------------- commands to sheds


class Command(Base):
    __tablename__ = "commands"
    __table_args__ = (
        UniqueConstraint("shed_id", "seq"),
        Index(None, "result_ms", "created_ms"),  # sweeps for commands without a result
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    shed_id: Mapped[str] = mapped_column(ForeignKey("sheds.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(Json)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    delivered_ms: Mapped[int | None] = mapped_column(BigInteger)  # first handed to the shed
    result_ok: Mapped[bool | None] = mapped_column(Boolean)
    result_code: Mapped[str | None] = mapped_column(String(REF_LEN))
    result_message: Mapped[str | None] = mapped_column(String(512))
    result_data: Mapped[dict[str, Any] | None] = mapped_column(Json)
    result_ms: Mapped[int | None] = mapped_column(BigInteger)


# ---------------------------------------------------------------- money


class Order(Base):
    """A scan-to-pay order (contracts/payments-v1.md, docs/scan-to-pay.md).

    Written by api/services/orders*.py and refunds.py; statuses: created ->
    starting -> charging -> closed | refunding -> refunded; refunding ->
    failed (a refund that needs staff); created -> expired.
    """

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(_one_of("status", ORDER_STATUSES), name="status"),
        CheckConstraint(_one_of("mode", ORDER_MODES), name="mode"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        Index(None, "shed_id", "port", "status"),
        Index(None, "status", "expires_ms"),
    )
    out_trade_no: Mapped[str] = mapped_column(String(TRADE_NO_LEN), primary_key=True)
    shed_id: Mapped[str] = mapped_column(ForeignKey("sheds.id"))
    port: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    phone: Mapped[str | None] = mapped_column(String(20), index=True)
    # Who made it, for the unpaid-order limit per client: the client address and a
    # hash of the device cookie (docs/security.md).
    client_address: Mapped[str | None] = mapped_column(String(64), index=True)
    device_hash: Mapped[str | None] = mapped_column(String(32), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    mode: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    tariff_id: Mapped[str | None] = mapped_column(String(REF_LEN))
    tariff_version: Mapped[int | None] = mapped_column(Integer)
    code_url: Mapped[str | None] = mapped_column(String(256))
    # the start_session command
    command_id: Mapped[str | None] = mapped_column(String(40), index=True)
    session_id: Mapped[str | None] = mapped_column(String(REF_LEN))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int | None] = mapped_column(BigInteger)
    paid_ms: Mapped[int | None] = mapped_column(BigInteger)
    closed_ms: Mapped[int | None] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    # Money of the order, integer fen: paid = billed + refund once settled.
    paid_fen: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    billed_fen: Mapped[int | None] = mapped_column(BigInteger)  # None until settled
    refund_fen: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Why it ended as it did (start_refused:busy, start_timeout, shed_offline, ...).
    problem: Mapped[str | None] = mapped_column(String(REF_LEN))
    # The provider confirmed that this order can no longer be paid (closed or unknown).
    provider_closed_ms: Mapped[int | None] = mapped_column(BigInteger)
    queried_ms: Mapped[int | None] = mapped_column(BigInteger)  # last asked the provider


class Payment(Base):
    """An applied payment notification: one per notification id and per transaction."""

    __tablename__ = "payments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(String(REF_LEN), unique=True)
    out_trade_no: Mapped[str] = mapped_column(ForeignKey("orders.out_trade_no"), index=True)
    transaction_id: Mapped[str] = mapped_column(String(REF_LEN), unique=True)
    trade_state: Mapped[str] = mapped_column(String(32))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    payer_total_fen: Mapped[int | None] = mapped_column(BigInteger)
    success_ms: Mapped[int | None] = mapped_column(BigInteger)
    received_ms: Mapped[int] = mapped_column(BigInteger)


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint(_one_of("status", REFUND_STATUSES), name="status"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        Index(None, "status", "next_attempt_ms"),  # the refund sender's sweep
    )
    out_refund_no: Mapped[str] = mapped_column(String(REF_LEN), primary_key=True)
    out_trade_no: Mapped[str] = mapped_column(ForeignKey("orders.out_trade_no"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(128))
    refund_id: Mapped[str | None] = mapped_column(String(REF_LEN))  # the provider's id
    created_ms: Mapped[int] = mapped_column(BigInteger)
    done_ms: Mapped[int | None] = mapped_column(BigInteger)
    # The refund sender: attempts so far, when to try (or query) next, what went wrong.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_ms: Mapped[int | None] = mapped_column(BigInteger)
    sent_ms: Mapped[int | None] = mapped_column(BigInteger)  # accepted by the provider
    last_error: Mapped[str | None] = mapped_column(String(256))


class NotificationLog(Base):
    """Provider notifications that were refused, and why (payments-v1 rule 3)."""

    __tablename__ = "notification_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    code: Mapped[str] = mapped_column(String(32))  # bad_signature, wrong_amount, ...
    detail: Mapped[str] = mapped_column(String(256))
    notification_id: Mapped[str | None] = mapped_column(String(REF_LEN))
    event_type: Mapped[str | None] = mapped_column(String(32))
    out_trade_no: Mapped[str | None] = mapped_column(String(REF_LEN))


# ---------------------------------------------------------------- people and cards


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_ms: Mapped[int] = mapped_column(BigInteger)
    # The name staff, office and admin users log in with (with a password);
    # residents log in by phone and have none.
    login: Mapped[str | None] = mapped_column(String(64), unique=True)


class SmsMessage(Base):
    """The simulated SMS sender's outbox (what would go to the phone)."""

    __tablename__ = "sms_messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    phone: Mapped[str] = mapped_column(String(20), index=True)
    text: Mapped[str] = mapped_column(String(256))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class LoginCode(Base):
    """A one-time SMS login code; only its hash is kept."""

    __tablename__ = "login_codes"
    __table_args__ = (Index(None, "phone", "created_ms"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    phone: Mapped[str] = mapped_column(String(20))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    used_ms: Mapped[int | None] = mapped_column(BigInteger)


class UserSession(Base):
    """A resident's login (the session cookie); only the token's sha256 is kept."""

    __tablename__ = "user_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)


class RoleGrant(Base):
    """A user's role in a compound. compound_id NULL: in every compound (admins)."""

    __tablename__ = "role_grants"
    __table_args__ = (
        UniqueConstraint("user_id", "compound_id", "role"),
        CheckConstraint(_one_of("role", ROLES), name="role"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    compound_id: Mapped[str | None] = mapped_column(ForeignKey("compounds.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Card(Base):
    """An IC card (刷卡充电) with a prepaid balance, valid in every shed of its compound."""

    __tablename__ = "cards"
    compound_id: Mapped[str] = mapped_column(ForeignKey("compounds.id"), primary_key=True)
    uid: Mapped[str] = mapped_column(String(20), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    balance_fen: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    blocked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class MonthlyPlan(Base):
    """A monthly plan (包月) on a card or a user, valid in [starts_ms, ends_ms)."""

    __tablename__ = "monthly_plans"
    __table_args__ = (
        ForeignKeyConstraint(["compound_id", "card_uid"], ["cards.compound_id", "cards.uid"]),
        CheckConstraint("ends_ms > starts_ms", name="period"),
        CheckConstraint("price_fen >= 0", name="price"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    compound_id: Mapped[str] = mapped_column(ForeignKey("compounds.id"), index=True)
    card_uid: Mapped[str | None] = mapped_column(String(20))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    starts_ms: Mapped[int] = mapped_column(BigInteger)
    ends_ms: Mapped[int] = mapped_column(BigInteger)
    price_fen: Mapped[int] = mapped_column(BigInteger)
    out_trade_no: Mapped[str | None] = mapped_column(String(TRADE_NO_LEN))
    created_ms: Mapped[int] = mapped_column(BigInteger)


# ---------------------------------------------------------------- community office reports
# Rollups kept in the transaction that applies a session or alarm record
# (api/reports/rollups.py, docs/reports.md). Days and hours are local China time
# (UTC+8); `day_ms` / `hour_ms` is the epoch ms at which that local day / hour begins.
# Port 0 is the shed itself (smoke alarms, unserved demand).

ROLLUP_COUNTS: Final = (
    "sessions",
    "energy_wh",
    "billed_fen",
    "refund_fen",
    "duration_ms",
    "in_use_ms",
    "end_full",
    "end_unplugged",
    "end_money",
    "end_safety",
    "end_stopped",
    "end_other",
    "incidents",
    "unserved",
)
HOUR_COUNTS: Final = ("sessions", "in_use_ms", "unserved")
DEMAND_SOURCES: Final = ("scan", "card")


def _counter() -> Mapped[int]:
    return mapped_column(BigInteger, default=0, server_default="0")


class ReportSocketDay(Base):
    """What one socket did in one local day. Sessions, energy, money and end
    reasons count on the day a session started; in-use time on the days it spans."""

    __tablename__ = "report_socket_days"
    __table_args__ = (Index(None, "compound_id", "day_ms"),)
    shed_id: Mapped[str] = mapped_column(ForeignKey("sheds.id"), primary_key=True)
    port: Mapped[int] = mapped_column(Integer, primary_key=True)
    day_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    compound_id: Mapped[str] = mapped_column(String(ID_LEN))
    sessions: Mapped[int] = _counter()
    energy_wh: Mapped[int] = _counter()
    billed_fen: Mapped[int] = _counter()
    refund_fen: Mapped[int] = _counter()
    duration_ms: Mapped[int] = _counter()
    in_use_ms: Mapped[int] = _counter()
    end_full: Mapped[int] = _counter()
    end_unplugged: Mapped[int] = _counter()
    end_money: Mapped[int] = _counter()
    end_safety: Mapped[int] = _counter()
    end_stopped: Mapped[int] = _counter()
    end_other: Mapped[int] = _counter()
    incidents: Mapped[int] = _counter()
    unserved: Mapped[int] = _counter()


class ReportShedHour(Base):
    """One shed in one local hour: the peak-hour heatmap."""

    __tablename__ = "report_shed_hours"
    __table_args__ = (Index(None, "compound_id", "hour_ms"),)
    shed_id: Mapped[str] = mapped_column(ForeignKey("sheds.id"), primary_key=True)
    hour_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    compound_id: Mapped[str] = mapped_column(String(ID_LEN))
    sessions: Mapped[int] = _counter()
    in_use_ms: Mapped[int] = _counter()
    unserved: Mapped[int] = _counter()


class ReportShedMonth(Base):
    """One shed in one local month: the district-wide report (every compound,
    per shed and per month) reads these rows, a year in sheds x 12 of them.
    The same counts as the shed's socket-days of that month, summed."""

    __tablename__ = "report_shed_months"
    shed_id: Mapped[str] = mapped_column(ForeignKey("sheds.id"), primary_key=True)
    month_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    compound_id: Mapped[str] = mapped_column(String(ID_LEN))
    sessions: Mapped[int] = _counter()
    energy_wh: Mapped[int] = _counter()
    billed_fen: Mapped[int] = _counter()
    refund_fen: Mapped[int] = _counter()
    duration_ms: Mapped[int] = _counter()
    in_use_ms: Mapped[int] = _counter()
    end_full: Mapped[int] = _counter()
    end_unplugged: Mapped[int] = _counter()
    end_money: Mapped[int] = _counter()
    end_safety: Mapped[int] = _counter()
    end_stopped: Mapped[int] = _counter()
    end_other: Mapped[int] = _counter()
    incidents: Mapped[int] = _counter()
    unserved: Mapped[int] = _counter()


class ReportContribution(Base):
    """What one session added to the rollups, so that a corrected version of
    it (or the same one applied again) changes them by the difference only."""

    __tablename__ = "report_contributions"
    shed_id: Mapped[str] = mapped_column(ForeignKey("sheds.id"), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(REF_LEN), primary_key=True)
    parts: Mapped[dict[str, Any]] = mapped_column(Json)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class DemandEvent(Base):
    """Unserved demand: a scan or card tap that found no free socket in the shed
    (one per shed per visitor within 30 minutes). `visitor` is a salted hash."""

    __tablename__ = "demand_events"
    __table_args__ = (
        CheckConstraint(_one_of("source", DEMAND_SOURCES), name="source"),
        Index(None, "shed_id", "visitor", "at_ms"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    shed_id: Mapped[str] = mapped_column(ForeignKey("sheds.id"))
    port: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(8))
    visitor: Mapped[str] = mapped_column(String(32))
    at_ms: Mapped[int] = mapped_column(BigInteger)
    received_ms: Mapped[int] = mapped_column(BigInteger)


# ---------------------------------------------------------------- staff accounts and audit


class LoginThrottle(Base):
    """Failed password logins per login name and per client address (api/services/throttle.py)."""

    __tablename__ = "login_throttle"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)  # "login:<name>", "ip:<addr>"
    window_start_ms: Mapped[int] = mapped_column(BigInteger)
    failures: Mapped[int] = mapped_column(Integer)
    locked_until_ms: Mapped[int | None] = mapped_column(BigInteger)


AUDIT_RESULTS: Final = ("ok", "pending", "failed")


class AuditEntry(Base):
    """One staff action: who, when, what, on what, with which note, and how it ended.

    Written in the transaction of the action itself. An action that sends a
    command to a shed is `pending` until the shed reports the command's result.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        CheckConstraint(_one_of("result", AUDIT_RESULTS), name="result"),
        Index(None, "compound_id", "at_ms"),
        Index(None, "shed_id", "at_ms"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor: Mapped[str] = mapped_column(String(64))  # the user's login, or "admin-token"
    compound_id: Mapped[str | None] = mapped_column(String(ID_LEN))
    shed_id: Mapped[str | None] = mapped_column(String(ID_LEN))
    action: Mapped[str] = mapped_column(String(32))  # stop, disable, enable, ack_alarm, ...
    target: Mapped[str] = mapped_column(String(128))  # "port 7", "alarm a-12", "card 1A2B", ...
    note: Mapped[str | None] = mapped_column(String(512))
    data: Mapped[dict[str, Any] | None] = mapped_column(Json)
    result: Mapped[str] = mapped_column(String(16))
    result_code: Mapped[str | None] = mapped_column(String(REF_LEN))
    result_message: Mapped[str | None] = mapped_column(String(512))
    result_ms: Mapped[int | None] = mapped_column(BigInteger)
    command_id: Mapped[str | None] = mapped_column(String(40), index=True)


# ---------------------------------------------------------------- the public money page


class MoneySettings(Base):
    """What the office set for a compound's public money page (docs/money-page.md):
    the grid price it pays per kWh and what the margin is for."""

    __tablename__ = "money_settings"
    compound_id: Mapped[str] = mapped_column(ForeignKey("compounds.id"), primary_key=True)
    grid_fen_per_kwh: Mapped[int] = mapped_column(Integer)
    margin_for: Mapped[str] = mapped_column(String(200), default="", server_default="")
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class MoneyExpense(Base):
    """An expense line the office added to a month (a repair, the insurance)."""

    __tablename__ = "money_expenses"
    __table_args__ = (Index(None, "compound_id", "month"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    compound_id: Mapped[str] = mapped_column(ForeignKey("compounds.id"))
    month: Mapped[str] = mapped_column(String(7))  # 2026-11, China time
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(String(200))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class MoneyMeterReading(Base):
    """What a shed's own main meter counted in a month (Wh), where it has one."""

    __tablename__ = "money_meter_readings"
    shed_id: Mapped[str] = mapped_column(ForeignKey("sheds.id"), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    energy_wh: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


# ---------------------------------------------------------------- consultations


class Household(Base):
    """A registered household of a compound, as the office keeps the list
    (building, unit, flat and the phones that answer for it)."""

    __tablename__ = "households"
    __table_args__ = (UniqueConstraint("compound_id", "building", "unit", "flat"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    compound_id: Mapped[str] = mapped_column(ForeignKey("compounds.id"), index=True)
    building: Mapped[str] = mapped_column(String(16))
    unit: Mapped[str] = mapped_column(String(16))
    flat: Mapped[str] = mapped_column(String(16))
    phones: Mapped[list[str]] = mapped_column(Json)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


CONSULTATION_KINDS: Final = ("tariff", "sockets", "text")


class Consultation(Base):
    """A proposal the office puts to the households (docs/money-page.md)."""

    __tablename__ = "consultations"
    __table_args__ = (CheckConstraint(_one_of("kind", CONSULTATION_KINDS), name="kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    compound_id: Mapped[str] = mapped_column(ForeignKey("compounds.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(String(120))
    text: Mapped[str] = mapped_column(String(2000))
    data: Mapped[dict[str, Any]] = mapped_column(Json)  # the proposal's figures
    threshold_pct: Mapped[int] = mapped_column(Integer)  # of the households that answer
    opened_ms: Mapped[int] = mapped_column(BigInteger)
    closes_ms: Mapped[int] = mapped_column(BigInteger)
    applied_ms: Mapped[int | None] = mapped_column(BigInteger)


class ConsultationAnswer(Base):
    """One household's answer (the last one given before the close counts)."""

    __tablename__ = "consultation_answers"
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultations.id"), primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), primary_key=True)
    answer: Mapped[str] = mapped_column(String(8))  # yes, no
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at_ms: Mapped[int] = mapped_column(BigInteger)
