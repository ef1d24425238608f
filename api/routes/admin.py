"""Admin: compounds, sheds and their tokens, tariffs, commands by hand.

Guarded by the admin token from the settings until user login exists.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from api.access import current_principal
from api.deps import AdminDep, CtxDep, DbDep, ShedIdPath
from api.errors import NotFound
from api.repos import commands as command_repo
from api.repos import compounds as compound_repo
from api.repos import sessions as session_repo
from api.repos import sheds as shed_repo
from api.schemas.commands import CommandIn, CommandStatus
from api.schemas.sheds import (
    CompoundIn,
    CompoundView,
    SessionView,
    ShedIn,
    ShedRegistered,
    ShedView,
    TariffIn,
    TariffView,
    TokenView,
)
from api.services.commands import enqueue_command
from api.services.registration import register_compound, register_shed, rotate_shed_token
from api.services.tariffs import store_tariff

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminDep])


@router.post("/compounds", status_code=201)
def create_compound(body: CompoundIn, db: DbDep, ctx: CtxDep) -> CompoundView:
    with db.begin():
        row = register_compound(db, body.id, body.name, now_ms=ctx.now_ms())
        return CompoundView.model_validate(row)


@router.get("/compounds")
def list_compounds(db: DbDep) -> list[CompoundView]:
    return [CompoundView.model_validate(c) for c in compound_repo.list_compounds(db)]


@router.post("/sheds", status_code=201)
def create_shed(body: ShedIn, db: DbDep, ctx: CtxDep) -> ShedRegistered:
    """Register a shed. The answer holds the shed's token: it is shown this once."""
    with db.begin():
        registered = register_shed(
            db,
            body.id,
            body.name,
            body.compound_id,
            now_ms=ctx.now_ms(),
            ports=body.ports,
            bays=body.bays,
        )
        return ShedRegistered(shed=ShedView.model_validate(registered.shed), token=registered.token)


@router.get("/sheds")
def list_sheds(
    db: DbDep, compound_id: Annotated[str | None, Query(max_length=32)] = None
) -> list[ShedView]:
    return [ShedView.model_validate(s) for s in shed_repo.list_sheds(db, compound_id)]


@router.get("/sheds/{shed_id}")
def get_shed(shed_id: ShedIdPath, db: DbDep) -> ShedView:
    shed = shed_repo.get_shed(db, shed_id)
    if shed is None:
        raise NotFound(f"no shed {shed_id}", code="unknown_shed")
    return ShedView.model_validate(shed)


@router.post("/sheds/{shed_id}/token")
def new_shed_token(shed_id: ShedIdPath, db: DbDep) -> TokenView:
    """Issue a new token (shown once); the old one stops working at once."""
    with db.begin():
        return TokenView(token=rotate_shed_token(db, shed_id))


@router.post("/sheds/{shed_id}/commands", status_code=201)
def create_command(
    shed_id: ShedIdPath, body: CommandIn, db: DbDep, ctx: CtxDep, request: Request
) -> CommandStatus:
    """Queue a command by hand (remote stop, disable a socket, push a tariff...);
    audited under the admin user, or `admin-token`."""
    principal = current_principal(request)
    actor = principal.actor if principal is not None else "admin-token"
    with db.begin():
        command = enqueue_command(
            db, shed_id, body.kind, body.data, now_ms=ctx.now_ms(), actor=actor
        )
        return CommandStatus.model_validate(command, from_attributes=True)


@router.get("/sheds/{shed_id}/commands")
def list_commands(
    shed_id: ShedIdPath, db: DbDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[CommandStatus]:
    """Newest first, with what became of each."""
    return [
        CommandStatus.model_validate(c, from_attributes=True)
        for c in command_repo.list_commands(db, shed_id, limit)
    ]


@router.get("/sheds/{shed_id}/commands/{command_id}")
def get_command(
    shed_id: ShedIdPath,
    command_id: Annotated[str, Path(min_length=1, max_length=40)],
    db: DbDep,
) -> CommandStatus:
    command = command_repo.get_command(db, shed_id, command_id)
    if command is None:
        raise NotFound(f"no command {command_id} for shed {shed_id}", code="unknown_command")
    return CommandStatus.model_validate(command, from_attributes=True)


@router.get("/sheds/{shed_id}/sessions")
def list_sessions(
    shed_id: ShedIdPath,
    db: DbDep,
    open_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[SessionView]:
    """Sessions as the shed reported them, newest first."""
    rows = session_repo.list_sessions(db, shed_id, open_only=open_only, limit=limit)
    return [SessionView.model_validate(s) for s in rows]


@router.post("/tariffs", status_code=201)
def create_tariff(body: TariffIn, db: DbDep, ctx: CtxDep) -> TariffView:
    """Store a tariff version. (id, version) is written once: the same body again
    is fine, a different one is `409 tariff_version_exists`."""
    with db.begin():
        row = store_tariff(db, body.tariff, compound_id=body.compound_id, now_ms=ctx.now_ms())
        return TariffView.model_validate(row)
