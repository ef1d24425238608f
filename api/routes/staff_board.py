"""The staff board's JSON API: sheds, sockets and bays live, alarms, actions,
the audit log (docs/staff-board.md). Staff (or admins) of the shed's compound."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from sqlalchemy.orm import Session

from api.access import Principal, PrincipalDep, require_role
from api.context import AppContext
from api.deps import CtxDep, DbDep, ShedIdPath
from api.models import AuditEntry
from api.repos import audit as audit_repo
from api.schemas.board import (
    AckIn,
    ActionAnswer,
    AlarmView,
    AuditView,
    BoardView,
    DisableIn,
    NoteIn,
)
from api.services import board, staff_actions

router = APIRouter(prefix="/staff", tags=["staff"])
AlarmIdPath = Annotated[str, Path(min_length=1, max_length=64)]
PortPath = Annotated[int, Path(ge=1, le=9999)]
StateQuery = Annotated[str | None, Query(max_length=16, pattern=r"^[a-z_]+$")]


def board_times(ctx: AppContext) -> board.BoardTimes:
    return board.BoardTimes(
        now_ms=ctx.now_ms(),
        offline_after_ms=ctx.settings.shed_offline_after_s * 1000,
        stale_after_ms=ctx.settings.board_live_stale_s * 1000,
    )


@router.get("/board")
def get_board(
    principal: PrincipalDep,
    db: DbDep,
    ctx: CtxDep,
    shed_id: Annotated[str | None, Query(pattern=r"^[a-z0-9-]{1,32}$")] = None,
    state: StateQuery = None,
) -> BoardView:
    """Every shed of your compounds (or one), each socket and bay as it is now."""
    return board.board(db, principal, board_times(ctx), shed_id=shed_id, state=state)


@router.get("/alarms")
def list_alarms(
    principal: PrincipalDep,
    db: DbDep,
    shed_id: Annotated[str | None, Query(pattern=r"^[a-z0-9-]{1,32}$")] = None,
    status: Literal["open", "all"] = "open",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AlarmView]:
    """Newest first. `open`: still active or not yet acknowledged; `all`: the history."""
    return board.alarms(db, principal, shed_id=shed_id, open_only=status == "open", limit=limit)


def _audited(
    db: Session, action: Callable[..., AuditEntry], principal: Principal, shed_id: str,
    target: int | str, text: str, ctx: AppContext,
) -> ActionAnswer:  # fmt: skip
    """Run a staff action in a transaction of its own; answer with its audit entry."""
    with db.begin():
        entry = action(db, principal, shed_id, target, text, now_ms=ctx.now_ms())
        return ActionAnswer(audit=AuditView.model_validate(entry))


@router.post("/sheds/{shed_id}/alarms/{alarm_id}/ack")
def ack_alarm(
    shed_id: ShedIdPath, alarm_id: AlarmIdPath, body: AckIn,
    principal: PrincipalDep, db: DbDep, ctx: CtxDep,
) -> ActionAnswer:  # fmt: skip
    """Acknowledge with a note: a shed's alarm through the shed (pending until it
    answers), an alarm of the API's own at once."""
    return _audited(db, staff_actions.acknowledge_alarm, principal, shed_id, alarm_id,
                    body.note, ctx)


@router.post("/sheds/{shed_id}/sockets/{port}/stop")
def stop(
    shed_id: ShedIdPath, port: PortPath, body: NoteIn,
    principal: PrincipalDep, db: DbDep, ctx: CtxDep,
) -> ActionAnswer:  # fmt: skip
    """Remote stop of the socket's session."""
    return _audited(db, staff_actions.stop_socket, principal, shed_id, port, body.note, ctx)


@router.post("/sheds/{shed_id}/sockets/{port}/disable")
def disable(
    shed_id: ShedIdPath, port: PortPath, body: DisableIn,
    principal: PrincipalDep, db: DbDep, ctx: CtxDep,
) -> ActionAnswer:  # fmt: skip
    """Take the socket out of service (a running session is stopped first)."""
    return _audited(db, staff_actions.disable_socket, principal, shed_id, port, body.reason, ctx)


@router.post("/sheds/{shed_id}/sockets/{port}/enable")
def enable(
    shed_id: ShedIdPath, port: PortPath, body: NoteIn,
    principal: PrincipalDep, db: DbDep, ctx: CtxDep,
) -> ActionAnswer:  # fmt: skip
    """Put a disabled socket back in service."""
    return _audited(db, staff_actions.enable_socket, principal, shed_id, port, body.note, ctx)


@router.get("/audit")
def audit_log(
    principal: PrincipalDep,
    db: DbDep,
    shed_id: Annotated[str | None, Query(pattern=r"^[a-z0-9-]{1,32}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditView]:
    """Staff actions in your compounds, newest first: who, when, what, result."""
    require_role(principal, *staff_actions.ROLES)
    compounds = principal.compounds(*staff_actions.ROLES)
    rows = audit_repo.entries(db, compounds=compounds, shed_id=shed_id, limit=limit)
    return [AuditView.model_validate(r) for r in rows]
