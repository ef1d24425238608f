"""Applying uplink records (docs/uplink-contract.md).

A batch is applied in one transaction, set-based: one statement locks and
reads the stored version of every (shed, kind, key) in the batch, in key
order; a record whose version is at or below the stored one (or below one
earlier in the batch) is a duplicate and changes nothing. Of the records of
one key only the highest new version is written: session rows with one
`INSERT ... ON CONFLICT` for the batch, the rollups by the batch's summed
difference (api/reports/rollups.py), the versions with one more statement.
Every statement is compiled once, whatever the batch.

A record that does not validate is rejected with a code and changes nothing.
Should the database refuse the batch (a value it cannot store, a conflict),
it is applied again record by record, each in its own transaction, so that
only the offending record is rejected. Anything else that goes wrong (the
database is down, a hook failed) aborts the call with a 5xx so that the shed
retries the batch later: nothing of it is applied.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api import metrics
from api.boundary import holds_control
from api.models import Alarm, Bay, ChargeSession, Socket
from api.reports import demand, rollups
from api.reports.contribution import SessionFigures
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


@dataclass(frozen=True, slots=True)
class _Parsed:
    at: int  # position in the batch
    record: RecordEnvelope
    data: RecordData


def apply_uplink(
    sessionmaker_: sessionmaker[Session],
    shed_id: str,
    records: Sequence[Any],
    *,
    now_ms: int,
    hooks: Hooks,
) -> UplinkResult:
    """Apply a batch in one transaction, as if record by record in the order given."""
    outcomes: dict[int, Outcome | Rejection] = {}
    ids: dict[int, str] = {}
    parsed: list[_Parsed] = []
    for at, raw in enumerate(records):
        try:
            record = _envelope(raw)
            parsed.append(_Parsed(at, record, _parse_data(record)))
            ids[at] = record.id
        except RecordRejected as rejected:
            outcomes[at] = _rejection(shed_id, _raw_id(raw), rejected)
    if parsed:
        try:
            with sessionmaker_.begin() as db:
                applied = _apply_batch(db, shed_id, parsed, now_ms, hooks)
            outcomes.update(zip((p.at for p in parsed), applied, strict=True))
        except (DataError, IntegrityError, RecordRejected) as err:
            log.warning("shed %s: batch refused (%s); applying record by record", shed_id, err)
            for p in parsed:
                try:
                    outcomes[p.at] = _apply_with_retry(
                        sessionmaker_, shed_id, p.record, now_ms, hooks
                    )
                except RecordRejected as rejected:
                    outcomes[p.at] = _rejection(shed_id, p.record.id, rejected)
    result = UplinkResult()
    for at in range(len(records)):
        outcome = outcomes[at]
        if isinstance(outcome, Rejection):
            result.rejected.append(outcome)
        else:
            (result.applied if outcome == "applied" else result.duplicates).append(ids[at])
    return result


def _rejection(shed_id: str, record_id: str | None, rejected: RecordRejected) -> Rejection:
    log.warning("shed %s: record %s rejected: %s", shed_id, record_id, rejected)
    return Rejection(id=record_id, code=rejected.code, message=rejected.message)


def _apply_batch(
    db: Session, shed_id: str, batch: list[_Parsed], now_ms: int, hooks: Hooks
) -> list[Outcome]:
    """The outcome of each record, in order; the new versions written."""
    keys = [(p.record.kind, p.record.key) for p in batch]
    if len(set(keys)) == len(keys):  # the usual batch: one statement checks and stores
        ordered = sorted(batch, key=lambda p: (p.record.kind, p.record.key))
        newer = record_versions.store_newer(
            db, shed_id, [(*_key(p), p.record.version, p.record.id) for p in ordered], now_ms
        )
        winners = [p for p in ordered if _key(p) in newer]
        outcomes: list[Outcome] = ["applied" if key in newer else "duplicate" for key in keys]
    else:
        outcomes, winners = _newest_of_each_key(db, shed_id, batch, now_ms)
    if not winners:
        return outcomes
    session_winners = [(p.record, p.data) for p in winners if isinstance(p.data, SessionData)]
    if session_winners:
        _apply_sessions(db, shed_id, session_winners, now_ms, hooks)
    # The other kinds are few: each record applied in the order given, as one
    # by one (a demand record reads the socket states the records before it set).
    for p, outcome in zip(batch, outcomes, strict=True):
        if outcome == "applied" and not isinstance(p.data, SessionData):
            _apply_other(db, shed_id, p.record, p.data, now_ms)
    board.bump(db, shed_id, now_ms)  # the staff board shows it (api/services/board_watch.py)
    return outcomes


def _key(p: _Parsed) -> tuple[str, str]:
    return (p.record.kind, p.record.key)


def _newest_of_each_key(
    db: Session, shed_id: str, batch: list[_Parsed], now_ms: int
) -> tuple[list[Outcome], list[_Parsed]]:
    """A batch with several records of one key: as if applied one by one, each
    key's newest version is the one written (versions stored here)."""
    stored = record_versions.lock_versions(db, shed_id, sorted({_key(p) for p in batch}), now_ms)
    top = dict(stored)
    newest: dict[tuple[str, str], _Parsed] = {}
    outcomes: list[Outcome] = []
    for p in batch:
        key = _key(p)
        if p.record.version > top[key]:
            top[key] = p.record.version
            newest[key] = p
            outcomes.append("applied")
        else:
            outcomes.append("duplicate")
    winners = [newest[key] for key in sorted(newest)]  # key order: rows locked in one order
    applied = [(*_key(p), p.record.version, p.record.id) for p in winners]
    record_versions.set_versions(db, shed_id, applied, now_ms)
    return outcomes, winners


def _apply_sessions(
    db: Session,
    shed_id: str,
    items: list[tuple[RecordEnvelope, SessionData]],
    now_ms: int,
    hooks: Hooks,
) -> None:
    """The newest version of each session in the batch (one per session id)."""
    stored = sessions.stored_closed(db, shed_id, [record.key for record, _ in items])
    closing = [
        record.key
        for record, data in items
        if data.ended_ms is not None and not stored.get(record.key, False)
    ]
    closing_set = set(closing)
    rows = [
        _session_values(shed_id, record, data, now_ms, record.key in closing_set)
        for record, data in items
    ]
    sessions.upsert_sessions(db, rows)
    metrics.count_sessions(db, opened=len(items) - len(stored), closed=len(closing))
    # the community office reports (docs/reports.md)
    rollups.record_sessions(db, shed_id, [(row["id"], _figures(row)) for row in rows], now_ms)
    if closing and hooks.session_closed:
        for row in sessions.get_sessions(db, shed_id, closing):
            hooks.run_session_closed(db, ClosedSession(shed_id=shed_id, session=row, now_ms=now_ms))


def _figures(row: dict[str, Any]) -> SessionFigures:
    return SessionFigures(
        port=row["port"],
        started_ms=row["started_ms"],
        ended_ms=row["ended_ms"],
        end_reason=row["end_reason"],
        energy_wh=row["energy_wh"],
        billed_fen=row["billed_fen"],
        refund_fen=row["refund_fen"],
    )


def _session_values(
    shed_id: str, record: RecordEnvelope, data: SessionData, now_ms: int, closes: bool
) -> dict[str, Any]:
    """The charge_sessions row of this version (`closed_received_ms` only when it closes)."""
    tariff = _tariff_dict(data.tariff) if data.tariff is not None else None
    return {
        "shed_id": shed_id,
        "id": record.key,
        "port": data.port,
        "auth_kind": data.auth.kind,
        "auth_ref": data.auth.ref,
        "auth_mode": data.auth.mode,
        "prepaid_fen": data.auth.prepaid_fen,
        "order_no": data.effective_order_no,
        "tariff": tariff,
        "tariff_id": tariff["id"] if tariff is not None else None,
        "tariff_version": tariff["version"] if tariff is not None else None,
        "started_ms": data.started_ms,
        "stop_ms": data.stop_ms,
        "ended_ms": data.ended_ms,
        "end_reason": data.end_reason,
        "first_wh": data.first_wh,
        "last_wh": data.last_wh,
        "energy_wh": data.energy_wh,
        "peak_w": data.peak_w,
        "billed_fen": data.billed_fen,
        "refund_fen": data.refund_fen,
        "flags": list(data.flags),
        "bill": data.bill,
        "data": record.data,
        "version": record.version,
        "reported_ms": record.ts,
        "received_ms": now_ms,
        "closed_received_ms": now_ms if closes else None,
    }


def _apply_other(
    db: Session, shed_id: str, record: RecordEnvelope, data: RecordData, now_ms: int
) -> None:
    """Sockets, alarms, bays, demand and tariffs: few, one at a time."""
    if isinstance(data, SocketData):
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
    elif isinstance(data, BayData):
        _apply_bay(db, shed_id, record, data, now_ms)
    db.flush()


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
    if holds_control(raw):  # NUL and the like never reach the database (api/boundary.py)
        raise RecordRejected("bad_record", "a control character (NUL, ...) in the record")
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
    else:
        _apply_other(db, shed_id, record, data, now_ms)
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
            _tariff_dict(data.tariff)  # bad_tariff
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


_TARIFFS: dict[str, dict[str, Any]] = {}  # repr of what a shed sent -> the normal form
_TARIFFS_KEPT = 256


def _tariff_dict(tariff: dict[str, Any]) -> dict[str, Any]:
    """The tariff as the API stores it (validated, normal form); `bad_tariff`.

    Batches carry the same few tariffs many times: each distinct one is read
    once (the repr of a JSON value tells its type and content). The dict
    returned is shared: never change it."""
    key = repr(tariff)
    known = _TARIFFS.get(key)
    if known is None:
        try:
            known = tariff_to_dict(tariff_from_dict(tariff))
        except TariffError as err:
            raise RecordRejected("bad_tariff", f"data.tariff: {err}") from err
        if len(_TARIFFS) >= _TARIFFS_KEPT:
            _TARIFFS.clear()
        _TARIFFS[key] = known
    return known


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
    tariff = copy.deepcopy(_tariff_dict(data.tariff)) if data.tariff is not None else None
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
