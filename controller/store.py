"""Edge persistence: SQLite (WAL) through SQLAlchemy 2.

Sessions are written when they start, checkpointed while they run and closed
when they end; alarms, IC cards and the card ledger live here too. On restart
the controller loads every open session and alarm back into the core, which
then reconciles them with what the boards report.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Integer,
    String,
    create_engine,
    delete,
    event,
    func,
    select,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from controller.core.chargeend import ChargeEndDetector
from controller.core.config import RuleConfig
from controller.core.model import Alarm, Authorization, Card
from controller.core.model import Session as ChargeSession
from controller.core.tariffs import (
    Usage,
    bill_from_dict,
    bill_to_dict,
    tariff_from_dict,
    tariff_to_dict,
)
from controller.faults import crash_point
from controller.store_schema import upgrade


class Base(DeclarativeBase):
    pass


class SessionRow(Base):
    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    port: Mapped[int] = mapped_column(Integer, index=True)
    auth_kind: Mapped[str] = mapped_column(String(16))
    auth_ref: Mapped[str] = mapped_column(String(64))
    auth_mode: Mapped[str] = mapped_column(String(16))
    prepaid_fen: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    tariff: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    stop_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    ended_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    end_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    first_wh: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_wh: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    energy_wh: Mapped[int] = mapped_column(BigInteger, default=0)
    peak_w: Mapped[float] = mapped_column(default=0.0)
    lease_until_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    usage: Mapped[dict[str, Any]] = mapped_column(JSON)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    bill: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    billed_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    refund_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_ms: Mapped[int] = mapped_column(BigInteger, default=0)


class AlarmRow(Base):
    __tablename__ = "alarms"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    raised_ms: Mapped[int] = mapped_column(BigInteger)
    detail: Mapped[str] = mapped_column(String(256))
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    bay: Mapped[int | None] = mapped_column(Integer, nullable=True)
    board: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sensor: Mapped[str | None] = mapped_column(String(64), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, index=True)
    acked_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    acked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    note: Mapped[str | None] = mapped_column(String(512), nullable=True)
    cleared_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class CardRow(Base):
    __tablename__ = "cards"
    uid: Mapped[str] = mapped_column(String(20), primary_key=True)
    balance_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    plan_until_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)


class CardLedgerRow(Base):
    __tablename__ = "card_ledger"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(20), index=True)
    session_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    delta_fen: Mapped[int] = mapped_column(BigInteger)
    balance_after_fen: Mapped[int] = mapped_column(BigInteger)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(String(128), default="")


class OutboxRow(Base):
    """Records waiting for the central API, oldest first (see docs/uplink-contract.md)."""

    __tablename__ = "outbox"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(BigInteger)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class RecordVersionRow(Base):
    """The newest version enqueued per (kind, key): the next record gets one more."""

    __tablename__ = "record_versions"
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class CommandDoneRow(Base):
    """Central commands carried out, with their result (a command runs once)."""

    __tablename__ = "commands_done"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    reported: Mapped[bool] = mapped_column(Boolean, default=False)
    ts_ms: Mapped[int] = mapped_column(BigInteger)


class MetaRow(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def open_engine(path: Path | str) -> Engine:
    url = path if isinstance(path, str) and "://" in path else f"sqlite:///{path}"
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    with engine.begin() as conn:
        upgrade(conn, Base.metadata)
    return engine


def session_to_row(s: ChargeSession, now_ms: int) -> dict[str, Any]:
    return {
        "id": s.id,
        "port": s.port,
        "auth_kind": s.auth.kind,
        "auth_ref": s.auth.ref,
        "auth_mode": s.auth.mode,
        "prepaid_fen": s.auth.prepaid_fen,
        "tariff": tariff_to_dict(s.tariff),
        "started_ms": s.started_ms,
        "stop_ms": s.stop_ms,
        "ended_ms": s.ended_ms,
        "end_reason": s.end_reason,
        "first_wh": s.first_wh,
        "last_wh": s.last_wh,
        "energy_wh": s.energy_wh,
        "peak_w": s.peak_w,
        "lease_until_ms": s.lease_until_ms,
        "usage": s.usage.to_dict(),
        "flags": sorted(s.flags),
        "reasons": [list(r) for r in s.reasons],
        "bill": bill_to_dict(s.bill) if s.bill is not None else None,
        "billed_fen": s.charged_fen,
        "refund_fen": s.refund_fen,
        "updated_ms": now_ms,
    }


def row_to_session(row: SessionRow, rules: RuleConfig) -> ChargeSession:
    auth = Authorization(row.auth_kind, row.auth_ref, row.prepaid_fen, row.auth_mode)  # type: ignore[arg-type]
    float_s = rules.plan_float_s if auth.kind == "plan" else rules.float_s
    s = ChargeSession(
        id=row.id,
        port=row.port,
        auth=auth,
        tariff=tariff_from_dict(row.tariff),
        started_ms=row.started_ms,
        usage=Usage.from_dict(row.usage),
        detector=ChargeEndDetector(rules, float_s),
        first_wh=row.first_wh,
        last_wh=row.last_wh,
        energy_wh=row.energy_wh,
        peak_w=row.peak_w,
        stop_ms=row.stop_ms,
        ended_ms=row.ended_ms,
        end_reason=row.end_reason,
        lease_until_ms=row.lease_until_ms,
        last_checkpoint_ms=row.updated_ms,
        flags=set(row.flags),
        reasons=[(int(r[0]), str(r[1]), str(r[2])) for r in row.reasons],
        bill=bill_from_dict(row.bill) if row.bill is not None else None,
        charged_fen=row.billed_fen,
        refund_fen=row.refund_fen,
    )
    s.detector.load_seen = any(r[1] in ("charging", "floating") for r in s.reasons)
    return s


def _session_upsert() -> Any:
    stmt = sqlite_insert(SessionRow)
    columns = [c.name for c in SessionRow.__table__.columns if c.name != "id"]
    return stmt.on_conflict_do_update(
        index_elements=[SessionRow.id], set_={c: stmt.excluded[c] for c in columns}
    )


_SESSION_UPSERT = _session_upsert()


@dataclass(frozen=True, slots=True)
class Debit:
    uid: str
    fen: int
    balance_fen: int
    session_id: str


@dataclass(slots=True)
class StoreWrite:
    """What one step of the controller must store, written in one transaction.

    A session's close, its bill, its card debit and its outbox record are one
    step: they land together or not at all (docs/operations.md)."""

    sessions: dict[str, ChargeSession] = field(default_factory=dict)
    opened: set[str] = field(default_factory=set)  # ids of sessions started in this step
    closed: set[str] = field(default_factory=set)
    alarms: dict[str, Alarm] = field(default_factory=dict)
    debits: list[Debit] = field(default_factory=list)
    records: list[tuple[str, str, int, dict[str, Any]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.sessions or self.alarms or self.debits or self.records)

    def drop_session(self, session_id: str) -> None:
        """Forget a start that will not be stored (it was undone)."""
        self.sessions.pop(session_id, None)
        self.opened.discard(session_id)
        self.records = [r for r in self.records if not (r[0] == "session" and r[1] == session_id)]


class EdgeStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def write(self, w: StoreWrite, now_ms: int) -> None:
        """Store one step in one transaction (nothing of it if anything fails)."""
        step = "open" if w.opened else "close" if w.closed else None
        with self._sessions.begin() as db:
            if w.sessions:
                rows = [session_to_row(s, now_ms) for s in w.sessions.values()]
                db.execute(_SESSION_UPSERT, rows)
            for a in w.alarms.values():
                db.merge(AlarmRow(**{k: getattr(a, k) for k in _ALARM_FIELDS}))
            for d in w.debits:
                _debit(db, d, now_ms)
            if w.records:
                _enqueue(db, w.records)
            if step is not None:
                crash_point(f"{step}:before_commit")
        if step is not None:
            crash_point(f"{step}:after_commit")
        if w.records:
            crash_point("outbox:after_enqueue")

    def debit_card(self, uid: str, fen: int, balance_fen: int, session_id: str, ts_ms: int) -> None:
        """Record a card debit once per session (a replay after restart is a no-op)."""
        self.write(StoreWrite(debits=[Debit(uid, fen, balance_fen, session_id)]), ts_ms)

    def upsert_card(self, card: Card, ts_ms: int, note: str = "top-up") -> None:
        with self._sessions.begin() as db:
            row = db.get(CardRow, card.uid)
            before = row.balance_fen if row is not None else 0
            db.merge(
                CardRow(
                    uid=card.uid,
                    balance_fen=card.balance_fen,
                    plan_until_ms=card.plan_until_ms,
                    blocked=card.blocked,
                )
            )
            if card.balance_fen != before:
                db.add(
                    CardLedgerRow(
                        uid=card.uid,
                        session_id=None,
                        delta_fen=card.balance_fen - before,
                        balance_after_fen=card.balance_fen,
                        ts_ms=ts_ms,
                        note=note,
                    )
                )

    def cards(self) -> list[Card]:
        with self._sessions() as db:
            return [
                Card(r.uid, r.balance_fen, r.plan_until_ms, r.blocked)
                for r in db.scalars(select(CardRow))
            ]

    def open_sessions(self, rules: RuleConfig) -> list[ChargeSession]:
        with self._sessions() as db:
            rows = db.scalars(select(SessionRow).where(SessionRow.ended_ms.is_(None))).all()
            return [row_to_session(r, rules) for r in rows]

    def closed_sessions(self, rules: RuleConfig, limit: int | None = None) -> list[ChargeSession]:
        """Closed sessions, oldest first (`limit`: only the newest that many)."""
        with self._sessions() as db:
            query = select(SessionRow).where(SessionRow.ended_ms.is_not(None))
            if limit is not None:
                query = query.order_by(SessionRow.ended_ms.desc()).limit(limit)
            rows = sorted(db.scalars(query), key=lambda r: (r.ended_ms or 0, r.started_ms))
            return [row_to_session(r, rules) for r in rows]

    def open_alarms(self) -> list[Alarm]:
        with self._sessions() as db:
            rows = db.scalars(
                select(AlarmRow).where((AlarmRow.active) | (AlarmRow.acked_ms.is_(None)))
            ).all()
            return [Alarm(**{k: getattr(r, k) for k in _ALARM_FIELDS}) for r in rows]

    def all_sessions(self) -> list[SessionRow]:
        with self._sessions() as db:
            return list(db.scalars(select(SessionRow).order_by(SessionRow.started_ms)))

    def alarm_rows(self) -> list[AlarmRow]:
        with self._sessions() as db:
            return list(db.scalars(select(AlarmRow).order_by(AlarmRow.raised_ms)))


    # ---- uplink outbox and central commands ---------------------------------

    def outbox_batch(self, limit: int) -> list[dict[str, Any]]:
        with self._sessions() as db:
            rows = db.scalars(select(OutboxRow).order_by(OutboxRow.seq).limit(limit)).all()
            return [{"id": r.id, "kind": r.kind, "key": r.key, "version": r.version,
                     "ts": r.ts_ms, "data": r.data} for r in rows]

    def outbox_delete(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        if ids:
            with self._sessions.begin() as db:
                db.execute(delete(OutboxRow).where(OutboxRow.id.in_(ids)))

    def outbox_depth(self) -> int:
        with self._sessions() as db:
            return int(db.scalar(select(func.count()).select_from(OutboxRow)) or 0)

    def meta(self, key: str) -> str | None:
        with self._sessions() as db:
            row = db.get(MetaRow, key)
            return row.value if row is not None else None

    def set_meta(self, key: str, value: str) -> None:
        with self._sessions.begin() as db:
            db.merge(MetaRow(key=key, value=value))

    def command_done(self, cmd_id: str) -> CommandDoneRow | None:
        with self._sessions() as db:
            return db.get(CommandDoneRow, cmd_id)

    def save_command(self, cmd_id: str, seq: int, kind: str, result: dict[str, Any],
                     ts_ms: int) -> None:
        with self._sessions.begin() as db:
            db.merge(CommandDoneRow(id=cmd_id, seq=seq, kind=kind, result=result,
                                    reported=False, ts_ms=ts_ms))

    def command_reported(self, cmd_id: str) -> None:
        with self._sessions.begin() as db:
            row = db.get(CommandDoneRow, cmd_id)
            if row is not None:
                row.reported = True

    def unreported_commands(self) -> list[CommandDoneRow]:
        with self._sessions() as db:
            return list(db.scalars(select(CommandDoneRow).where(CommandDoneRow.reported.is_(False))
                                   .order_by(CommandDoneRow.seq)))


_ALARM_FIELDS = tuple(f.name for f in dataclasses.fields(Alarm))


def _debit(db: Session, d: Debit, ts_ms: int) -> None:
    seen = db.scalar(select(CardLedgerRow.id).where(CardLedgerRow.session_id == d.session_id))
    card = db.get(CardRow, d.uid)
    if seen is not None or card is None:
        return
    card.balance_fen = d.balance_fen
    db.add(
        CardLedgerRow(
            uid=d.uid,
            session_id=d.session_id,
            delta_fen=-d.fen,
            balance_after_fen=d.balance_fen,
            ts_ms=ts_ms,
            note="session",
        )
    )


def _enqueue(db: Session, records: Iterable[tuple[str, str, int, dict[str, Any]]]) -> int:
    n = 0
    for kind, key, ts_ms, data in records:
        ver = db.get(RecordVersionRow, (kind, key))
        if ver is None:
            ver = RecordVersionRow(kind=kind, key=key, version=0)
            db.add(ver)
        ver.version += 1
        db.add(OutboxRow(id=uuid.uuid4().hex, kind=kind, key=key, version=ver.version,
                         ts_ms=ts_ms, data=data))  # fmt: skip
        n += 1
    return n
