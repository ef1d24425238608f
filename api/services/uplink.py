"""Applying uplink records (docs/uplink-contract.md).

Each record is applied in its own transaction, under a lock on its
(shed, kind, key) version row: a version at or below the stored one is a
duplicate and changes nothing; a record that does not validate is rejected
with a code and changes nothing; anything else that goes wrong (the database
is down, a hook failed) aborts the call with a 5xx so that the shed retries
the batch later. Records applied before that stay applied, and come back as
duplicates on the retry.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.models import Alarm, Bay, ChargeSession, Socket
from api.reports import demand, rollups
from api.reports.reasons import is_incident
from api.repos import alarms, board, record_versions, sessions, sheds, sockets
from api.schemas.records import (
    RECORD_KINDS,
    AlarmData,
    BayData,
    DemandData,
    RecordEnvelope,
    Rejection,
    SessionData,
    SocketData,
    TariffData,
)
from api.services.events import ClosedSession
from api.services.hooks import Hooks
from controller.core.tariffs import TariffError, tariff_from_dict, tariff_to_dict

log = logging.getLogger(__name__)

Outcome = Literal["applied", "duplicate"]
_M = TypeVar("_M", bound=BaseModel)


class RecordRejected(Exception):
    """A record that retrying cannot fix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(slots=True)
class UplinkResult:
    applied: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def apply_uplink(
    sessionmaker_: sessionmaker[Session],
    shed_id: str,
    records: Sequence[Any],
    *,
    now_ms: int,
    hooks: Hooks,
) -> UplinkResult:
    """Apply a batch, each record in its own transaction, in the order given."""
    result = UplinkResult()
    for raw in records:
        record_id = _raw_id(raw)
        try:
            record = _envelope(raw)
            outcome = _apply_with_retry(sessionmaker_, shed_id, record, now_ms, hooks)
        except RecordRejected as rejected:
            log.warning("shed %s: record %s rejected: %s", shed_id, record_id, rejected)
            result.rejected.append(
                Rejection(id=record_id, code=rejected.code, message=rejected.message)
            )
            continue
        (result.applied if outcome == "applied" else result.duplicates).append(record.id)
    return result


def _raw_id(raw: Any) -> str | None:
    if isinstance(raw, dict):
        value = raw.get("id")
        if isinstance(value, str):
            return value[:64]
    return None


def _envelope(raw: Any) -> RecordEnvelope:
    if not isinstance(raw, dict):
        raise RecordRejected("bad_record", "a record must be a JSON object")
    record = _validate(RecordEnvelope, raw, "bad_record")
    if record.kind not in RECORD_KINDS:
        raise RecordRejected("unknown_kind", f"unknown record kind {record.kind!r}")
    return record


def _validate(model: type[_M], data: Any, code: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = f"{where}: {first['msg']}" if where else first["msg"]
        raise RecordRejected(code, message) from err


def _apply_with_retry(
    sessionmaker_: sessionmaker[Session],
    shed_id: str,
    record: RecordEnvelope,
    now_ms: int,
    hooks: Hooks,
) -> Outcome:
    for attempt in (1, 2):
        try:
            with sessionmaker_.begin() as db:
                return apply_record(db, shed_id, record, now_ms=now_ms, hooks=hooks)
        except DataError as err:  # the database refused a value (e.g. a NUL byte)
            raise RecordRejected("bad_record", f"value not storable: {err.orig}") from err
        except IntegrityError as err:
            # Should not happen under the version lock; a race we did not foresee
            # resolves on a second try, where the first writer's row is visible.
            if attempt == 2:
                raise RecordRejected("conflict", f"could not apply: {err.orig}") from err
            log.warning("shed %s: retrying record %s after %s", shed_id, record.id, err.orig)
    raise AssertionError("unreachable")


def apply_record(
    db: Session, shed_id: str, record: RecordEnvelope, *, now_ms: int, hooks: Hooks
) -> Outcome:
    """Apply one validated envelope inside the caller's transaction."""
    data = _parse_data(record)
    version = record_versions.lock_version(db, shed_id, record.kind, record.key, now_ms)
    if record.version <= version.version:
        return "duplicate"
    if isinstance(data, SessionData):
        _apply_session(db, shed_id, record, data, now_ms, hooks)
    elif isinstance(data, SocketData):
        _apply_socket(db, shed_id, record, data, now_ms)
    elif isinstance(data, AlarmData):
        _apply_alarm(db, shed_id, record, data, now_ms)
    elif isinstance(data, DemandData):
        demand.record_card_refusal(
            db,
            shed_id,
            port=data.port,
            reason=data.reason,
            card=data.card,
            at_ms=data.at_ms,
            now_ms=now_ms,
        )
    elif isinstance(data, TariffData):
        _apply_tariff(db, shed_id, data, now_ms)
    else:
        _apply_bay(db, shed_id, record, data, now_ms)
    version.version = record.version
    version.record_id = record.id
    version.applied_ms = now_ms
    board.bump(db, shed_id, now_ms)  # the staff board shows it (api/services/board_watch.py)
    db.flush()
    return "applied"


RecordData = SessionData | SocketData | AlarmData | BayData | DemandData | TariffData


def _parse_data(record: RecordEnvelope) -> RecordData:
    data: RecordData
    if record.kind == "session":
        data = _validate(SessionData, record.data, "bad_record")
        _check_key(record, data.id, "session id")
        if data.tariff is not None:
            try:
                tariff_from_dict(data.tariff)
            except TariffError as err:
                raise RecordRejected("bad_tariff", f"data.tariff: {err}") from err
    elif record.kind == "socket":
        data = _validate(SocketData, record.data, "bad_record")
        _check_key(record, str(data.port), "port")
    elif record.kind == "alarm":
        data = _validate(AlarmData, record.data, "bad_record")
        _check_key(record, data.id, "alarm id")
    elif record.kind == "demand":
        data = _validate(DemandData, record.data, "bad_record")
    elif record.kind == "tariff":
        data = _validate(TariffData, record.data, "bad_record")
        _check_key(record, "current", "tariff key")
        try:
            tariff_from_dict(data.tariff)
        except TariffError as err:
            raise RecordRejected("bad_tariff", f"data.tariff: {err}") from err
    else:
        data = _validate(BayData, record.data, "bad_record")
        _check_key(record, str(data.bay), "bay number")
    return data


def _check_key(record: RecordEnvelope, expected: str | None, what: str) -> None:
    if expected is not None and record.key != expected:
        raise RecordRejected(
            "key_mismatch", f"key {record.key!r} does not match the {what} {expected!r}"
        )


def _apply_session(
    db: Session,
    shed_id: str,
    record: RecordEnvelope,
    data: SessionData,
    now_ms: int,
    hooks: Hooks,
) -> None:
    row = sessions.get_session(db, shed_id, record.key)
    was_closed = row is not None and row.ended_ms is not None
    if row is None:
        row = ChargeSession(shed_id=shed_id, id=record.key)
        db.add(row)
    tariff = tariff_to_dict(tariff_from_dict(data.tariff)) if data.tariff is not None else None
    row.port = data.port
    row.auth_kind = data.auth.kind
    row.auth_ref = data.auth.ref
    row.auth_mode = data.auth.mode
    row.prepaid_fen = data.auth.prepaid_fen
    row.order_no = data.effective_order_no
    row.tariff = tariff
    row.tariff_id = tariff["id"] if tariff is not None else None
    row.tariff_version = tariff["version"] if tariff is not None else None
    row.started_ms = data.started_ms
    row.stop_ms = data.stop_ms
    row.ended_ms = data.ended_ms
    row.end_reason = data.end_reason
    row.first_wh = data.first_wh
    row.last_wh = data.last_wh
    row.energy_wh = data.energy_wh
    row.peak_w = data.peak_w
    row.billed_fen = data.billed_fen
    row.refund_fen = data.refund_fen
    row.flags = list(data.flags)
    row.bill = data.bill
    row.data = record.data
    row.version = record.version
    row.reported_ms = record.ts
    row.received_ms = now_ms
    db.flush()
    rollups.record_session(db, row, now_ms)  # the community office reports (docs/reports.md)
    if row.ended_ms is not None and not was_closed:
        hooks.run_session_closed(db, ClosedSession(shed_id=shed_id, session=row, now_ms=now_ms))


def _apply_tariff(db: Session, shed_id: str, data: TariffData, now_ms: int) -> None:
    """What the shed bills new sessions at: the price its pages and stickers show."""
    shed = sheds.get_shed(db, shed_id)
    if shed is None:  # the route checked the token of this shed
        raise RecordRejected("unknown_shed", f"no shed {shed_id}")
    shed.tariff = tariff_to_dict(tariff_from_dict(data.tariff))
    shed.tariff_received_ms = now_ms


def _apply_socket(
    db: Session, shed_id: str, record: RecordEnvelope, data: SocketData, now_ms: int
) -> None:
    row = sockets.get_socket(db, shed_id, data.port)
    if row is None:
        row = Socket(shed_id=shed_id, port=data.port)
        db.add(row)
    row.state = data.state
    row.since_ms = data.since
    row.disabled_reason = data.disabled_reason
    row.session_id = data.session
    row.power_w = data.w
    row.reported_ms = record.ts
    row.updated_ms = now_ms


def _apply_alarm(
    db: Session, shed_id: str, record: RecordEnvelope, data: AlarmData, now_ms: int
) -> None:
    row = alarms.get_alarm(db, shed_id, record.key)
    first_heard = row is None
    if row is None:
        row = Alarm(shed_id=shed_id, id=record.key)
        db.add(row)
    for name in (
        "kind",
        "raised_ms",
        "detail",
        "port",
        "bay",
        "board",
        "sensor",
        "active",
        "acked_ms",
        "acked_by",
        "note",
        "cleared_ms",
    ):
        setattr(row, name, getattr(data, name))
    row.reported_ms = record.ts
    row.updated_ms = now_ms
    if first_heard and is_incident(data.kind):  # a safety incident, counted once
        rollups.record_incident(db, shed_id, data.port, data.raised_ms)


def _apply_bay(
    db: Session, shed_id: str, record: RecordEnvelope, data: BayData, now_ms: int
) -> None:
    row = sockets.get_bay(db, shed_id, data.bay)
    if row is None:
        row = Bay(shed_id=shed_id, number=data.bay)
        db.add(row)
    row.occupied = data.occupied
    row.since_ms = data.since
    if data.port is not None:
        row.port = data.port
    row.reported_ms = record.ts
    row.updated_ms = now_ms
