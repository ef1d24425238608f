"""Every staff action writes an audit row in the transaction of the action itself:
who, when, what, on what, the note, and the result. A command sent to a shed
leaves the row `pending`; `on_command_result` (a command_result hook, run in
the transaction that records the shed's answer) fills in the result.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy.orm import Session

from api.access import Principal
from api.models import AuditEntry
from api.repos import alarms as alarm_repo
from api.repos import audit as audit_repo
from api.repos import board
from api.services.events import CommandResulted
from api.services.hooks import Hooks

Result = Literal["ok", "pending", "failed"]


def record(
    db: Session,
    principal: Principal,
    *,
    action: str,
    target: str,
    now_ms: int,
    compound_id: str | None = None,
    shed_id: str | None = None,
    note: str | None = None,
    data: dict[str, Any] | None = None,
    result: Result = "ok",
    command_id: str | None = None,
    result_code: str | None = None,
    result_message: str | None = None,
) -> AuditEntry:
    return audit_repo.add(
        db,
        AuditEntry(
            at_ms=now_ms,
            user_id=principal.user_id,
            actor=principal.actor[:64],
            compound_id=compound_id,
            shed_id=shed_id,
            action=action,
            target=target[:128],
            note=(note or None) and note[:512],
            data=data,
            result=result,
            result_code=result_code,
            result_message=result_message and result_message[:512],
            result_ms=None if result == "pending" else now_ms,
            command_id=command_id,
        ),
    )


def on_command_result(db: Session, event: CommandResulted) -> None:
    """The shed answered a command a staff action sent: complete its audit rows."""
    command = event.command
    for entry in audit_repo.pending_for_command(db, command.id):
        entry.result = "ok" if command.result_ok else "failed"
        entry.result_code = command.result_code
        entry.result_message = command.result_message and command.result_message[:512]
        entry.result_ms = event.now_ms
        board.bump(db, event.shed_id, event.now_ms)
    if command.kind == "ack_alarm" and not command.result_ok:
        # The shed refused (it no longer has the alarm, or it was acknowledged
        # there first): the board offers the acknowledgement again.
        alarm = alarm_repo.get_alarm(db, event.shed_id, str(command.data.get("alarm_id")))
        if alarm is not None and alarm.ack_command_id == command.id:
            alarm.ack_command_id = None
            board.bump(db, event.shed_id, event.now_ms)


def with_staff_hooks(hooks: Hooks) -> Hooks:
    """The caller's hooks plus the audit log's."""
    return Hooks(
        session_closed=list(hooks.session_closed),
        command_result=[*hooks.command_result, on_command_result],
    )
