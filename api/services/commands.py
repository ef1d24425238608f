"""Commands for sheds: queue them, hand them out, record what the shed did.

`enqueue_command` only adds rows to the caller's transaction: a payment and
the start command it causes commit together or not at all. Long polls in
this worker are woken right after that commit (see command_waiters.py);
those in other workers find the command on their next database check.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.errors import Conflict, Invalid, NotFound
from api.models import Command
from api.repos import commands as command_repo
from api.repos import sheds as shed_repo
from api.schemas.commands import COMMAND_DATA, COMMAND_KINDS, CommandResultIn
from api.services import audit
from api.services.command_waiters import wake_after_commit
from api.services.events import CommandResulted
from api.services.hooks import Hooks
from controller.core.tariffs import TariffError, tariff_from_dict, tariff_to_dict

MAX_COMMANDS_PER_POLL = 100
MAX_COMMAND_ID_LEN = 40


def new_command_id() -> str:
    return f"c-{secrets.token_hex(8)}"


def command_data(kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Check a command's data against the contract; the normalised data, or `Invalid`."""
    if kind not in COMMAND_KINDS:
        raise Invalid(f"unknown command kind {kind!r}", code="bad_command")
    if kind == "tariff":
        try:
            return tariff_to_dict(tariff_from_dict(data))
        except TariffError as err:
            raise Invalid(f"tariff: {err}", code="bad_command") from err
    try:
        parsed = COMMAND_DATA[kind].model_validate(dict(data))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Invalid(f"{kind}: {where}: {first['msg']}", code="bad_command") from err
    # A top-level field left out stays out (stop_session's optional selectors).
    return {k: v for k, v in parsed.model_dump(mode="json").items() if v is not None}


def enqueue_command(
    db: Session,
    shed_id: str,
    kind: str,
    data: Mapping[str, Any],
    *,
    now_ms: int,
    command_id: str | None = None,
    actor: str | None = None,
    note: str | None = None,
) -> Command:
    """Queue a command for a shed in the caller's transaction (the caller commits).

    `actor` (the admin token, a resident, the payment, the API): an audit row
    for the command, `pending` until the shed answers (api/services/audit.py).
    Staff actions leave it out: they write their own row, with the command id.

    `kind` and `data` are checked against docs/uplink-contract.md (`Invalid`,
    code `bad_command`); an unknown shed is `NotFound` (`unknown_shed`). The
    command gets the shed's next seq; the shed sees it once committed.
    """
    body = command_data(kind, data)
    if command_id is not None and not 1 <= len(command_id) <= MAX_COMMAND_ID_LEN:
        raise Invalid(f"command ids have 1..{MAX_COMMAND_ID_LEN} characters", code="bad_command")
    seq = shed_repo.next_command_seq(db, shed_id)
    if seq is None:
        raise NotFound(f"no shed {shed_id}", code="unknown_shed")
    command = Command(
        id=command_id or new_command_id(),
        shed_id=shed_id,
        seq=seq,
        kind=kind,
        data=body,
        created_ms=now_ms,
    )
    db.add(command)
    db.flush()
    if actor is not None:
        audit.record_command(db, command, actor=actor, now_ms=now_ms, note=note)
    wake_after_commit(db, shed_id)
    return command


def take_commands(db: Session, shed_id: str, after_seq: int, *, now_ms: int) -> Sequence[Command]:
    """Commands with seq > after_seq, oldest first; notes them as delivered."""
    found = command_repo.commands_after(db, shed_id, after_seq, MAX_COMMANDS_PER_POLL)
    command_repo.mark_delivered(db, [c.id for c in found], now_ms)
    return found


def record_command_result(
    db: Session,
    shed_id: str,
    command_id: str,
    result: CommandResultIn,
    *,
    now_ms: int,
    hooks: Hooks,
) -> Command:
    """Record a command's result once. The same result again changes nothing;
    a different one is a `Conflict` (`result_conflict`)."""
    command = command_repo.get_command(db, shed_id, command_id, lock=True)
    if command is None:
        raise NotFound(f"no command {command_id} for shed {shed_id}", code="unknown_command")
    if command.result_ms is not None:
        if _same_result(command, result):
            return command
        raise Conflict(
            f"command {command_id} already has a different result", code="result_conflict"
        )
    command.result_ok = result.ok
    command.result_code = result.code
    command.result_message = result.message
    command.result_data = result.data
    command.result_ms = now_ms
    db.flush()
    hooks.run_command_result(db, CommandResulted(shed_id=shed_id, command=command, now_ms=now_ms))
    return command


def _same_result(command: Command, result: CommandResultIn) -> bool:
    return (
        command.result_ok == result.ok
        and command.result_code == result.code
        and command.result_message == result.message
        and (command.result_data or None) == (result.data or None)
    )
