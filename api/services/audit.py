"""The audit log: who, when, what, on what, the note, and the result.

Rows are written in the transaction of what they record:

- every staff action (api/services/staff_actions.py and its siblings);
- every command sent to a shed through the API whatever asked for it: staff,
  the admin token, a resident's stop, a payment's start (`record_command`,
  through `enqueue_command(actor=...)`);
- every money movement the API makes: a payment applied, a refund owed, paid
  or failed (`record_money`); card top-ups are staff actions.

The log is append-only: a command sent leaves its row `pending`, and
`on_command_result` (a command_result hook, run in the transaction that
records the shed's answer) adds a new row, action `result`, with the outcome
and `data.of` = the id of the row it answers; nothing is ever updated. On
PostgreSQL and SQLite a trigger refuses UPDATE and DELETE on `audit_log`
(migration 0007). Listings fold each result into the row it answers.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy.orm import Session

from api.access import Principal
from api.models import AuditEntry, Command
from api.repos import alarms as alarm_repo
from api.repos import audit as audit_repo
from api.repos import board
from api.repos import sheds as shed_repo
from api.services.events import CommandResulted
from api.services.hooks import Hooks

Result = Literal["ok", "pending", "failed"]
RESULT = audit_repo.RESULT


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


def record_system(
    db: Session,
    *,
    actor: str,
    action: str,
    target: str,
    now_ms: int,
    shed_id: str | None,
    note: str | None = None,
    data: dict[str, Any] | None = None,
    result: Result = "ok",
    command_id: str | None = None,
) -> AuditEntry:
    """A row for something no staff user did: the admin token, a resident, the
    payment provider, the API itself."""
    shed = shed_repo.get_shed(db, shed_id) if shed_id is not None else None
    return audit_repo.add(
        db,
        AuditEntry(
            at_ms=now_ms, user_id=None, actor=actor[:64],
            compound_id=shed.compound_id if shed is not None else None, shed_id=shed_id,
            action=action[:32], target=target[:128], note=(note or None) and note[:512],
            data=data, result=result, result_code=None, result_message=None,
            result_ms=None if result == "pending" else now_ms, command_id=command_id,
        ),
    )  # fmt: skip


def record_command(
    db: Session, command: Command, *, actor: str, now_ms: int, note: str | None = None
) -> AuditEntry:
    """A command queued for a shed: `pending` until its result row."""
    port = command.data.get("port") if isinstance(command.data, dict) else None
    return record_system(
        db, actor=actor, action=command.kind, target=f"port {port}" if port else "shed",
        now_ms=now_ms, shed_id=command.shed_id, note=note, data=dict(command.data),
        result="pending", command_id=command.id,
    )  # fmt: skip


def record_money(
    db: Session,
    *,
    actor: str,
    action: str,
    out_trade_no: str,
    shed_id: str,
    amount_fen: int,
    now_ms: int,
    result: Result = "ok",
    **data: Any,
) -> AuditEntry:
    """Money moved (or is owed): a payment applied, a refund owed, paid or failed."""
    return record_system(
        db, actor=actor, action=action, target=f"order {out_trade_no}", now_ms=now_ms,
        shed_id=shed_id, data={"amount_fen": amount_fen, **data}, result=result,
    )  # fmt: skip


def on_command_result(db: Session, event: CommandResulted) -> None:
    """The shed answered a command: a result row for each row still waiting for it."""
    command = event.command
    answered = audit_repo.answered_for_command(db, command.id)
    for entry in audit_repo.pending_for_command(db, command.id):
        if entry.id in answered:
            continue
        audit_repo.add(
            db,
            AuditEntry(
                at_ms=event.now_ms, user_id=None, actor="shed", compound_id=entry.compound_id,
                shed_id=entry.shed_id, action=RESULT, target=entry.target, note=None,
                data={"of": entry.id}, result="ok" if command.result_ok else "failed",
                result_code=command.result_code,
                result_message=command.result_message and command.result_message[:512],
                result_ms=event.now_ms, command_id=command.id,
            ),
        )  # fmt: skip
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
