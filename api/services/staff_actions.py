"""Staff actions on sheds from the board: remote stop, disable and enable a
socket, acknowledge an alarm. Each checks the principal's compound, sends
its command to the shed (api/services/commands.py) and writes its audit row,
all in the caller's transaction: the command and its audit commit together.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from api.access import Principal, require_shed
from api.errors import Conflict, NotFound
from api.models import AuditEntry, Shed, Socket
from api.repos import alarms as alarm_repo
from api.repos import board
from api.repos import sockets as socket_repo
from api.services import audit
from api.services.api_alarms import API_ALARM_KINDS
from api.services.commands import enqueue_command

ROLES = ("staff",)


def _socket_shed(
    db: Session, principal: Principal, shed_id: str, port: int
) -> tuple[Shed, Socket]:
    shed = require_shed(db, principal, shed_id, *ROLES)
    socket = socket_repo.get_socket(db, shed_id, port)
    if socket is None:
        raise NotFound(f"no socket {port} in shed {shed_id}", code="unknown_socket")
    return shed, socket


def _send(
    db: Session,
    principal: Principal,
    shed: Shed,
    kind: str,
    data: dict[str, Any],
    *,
    action: str,
    target: str,
    note: str | None,
    now_ms: int,
) -> AuditEntry:
    command = enqueue_command(db, shed.id, kind, data, now_ms=now_ms)
    entry = audit.record(
        db, principal, action=action, target=target, now_ms=now_ms, compound_id=shed.compound_id,
        shed_id=shed.id, note=note, data=command.data, result="pending", command_id=command.id,
    )  # fmt: skip
    board.bump(db, shed.id, now_ms)
    return entry


def stop_socket(
    db: Session, principal: Principal, shed_id: str, port: int, note: str, *, now_ms: int
) -> AuditEntry:
    shed, socket = _socket_shed(db, principal, shed_id, port)
    data: dict[str, Any] = {"port": port, "reason": "staff"}
    if socket.session_id is not None:
        data["session_id"] = socket.session_id  # the session staff saw, not a later one
    return _send(db, principal, shed, "stop_session", data, action="stop",
                 target=f"port {port}", note=note, now_ms=now_ms)  # fmt: skip


def disable_socket(
    db: Session, principal: Principal, shed_id: str, port: int, reason: str, *, now_ms: int
) -> AuditEntry:
    shed, _ = _socket_shed(db, principal, shed_id, port)
    data = {"port": port, "reason": reason}
    return _send(db, principal, shed, "disable", data, action="disable",
                 target=f"port {port}", note=reason, now_ms=now_ms)  # fmt: skip


def enable_socket(
    db: Session, principal: Principal, shed_id: str, port: int, note: str, *, now_ms: int
) -> AuditEntry:
    shed, _ = _socket_shed(db, principal, shed_id, port)
    data = {"port": port, "reason": note[:128]}
    return _send(db, principal, shed, "enable", data, action="enable",
                 target=f"port {port}", note=note, now_ms=now_ms)  # fmt: skip


def acknowledge_alarm(
    db: Session, principal: Principal, shed_id: str, alarm_id: str, note: str, *, now_ms: int
) -> AuditEntry:
    """A shed's alarm is acknowledged by the shed (the `ack_alarm` command; its
    record comes back acknowledged); an alarm of the API's own at once."""
    shed = require_shed(db, principal, shed_id, *ROLES)
    alarm = alarm_repo.get_alarm(db, shed_id, alarm_id)
    if alarm is None:
        raise NotFound(f"no alarm {alarm_id} in shed {shed_id}", code="unknown_alarm")
    if alarm.acked_ms is not None:
        raise Conflict(f"alarm {alarm_id} was acknowledged by {alarm.acked_by}",
                       code="already_acked")  # fmt: skip
    if alarm.ack_command_id is not None:
        raise Conflict(f"alarm {alarm_id} is being acknowledged; waiting for the shed",
                       code="ack_pending")  # fmt: skip
    target = f"alarm {alarm_id} ({alarm.kind})"
    if alarm.kind in API_ALARM_KINDS:
        alarm.acked_ms, alarm.acked_by, alarm.note = now_ms, principal.actor[:64], note
        alarm.updated_ms = now_ms
        board.bump(db, shed_id, now_ms)
        return audit.record(
            db, principal, action="ack_alarm", target=target, now_ms=now_ms,
            compound_id=shed.compound_id, shed_id=shed_id, note=note,
        )  # fmt: skip
    data = {"alarm_id": alarm_id, "by": principal.actor[:64], "note": note}
    entry = _send(db, principal, shed, "ack_alarm", data, action="ack_alarm", target=target,
                  note=note, now_ms=now_ms)  # fmt: skip
    alarm.ack_command_id = entry.command_id
    return entry
