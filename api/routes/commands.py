"""A shed's command channel: the long poll and the results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from api.deps import CtxDep, DbDep, ShedDep
from api.schemas.commands import CommandResultIn, CommandsAnswer, CommandView
from api.services.commands import record_command_result, take_commands

router = APIRouter(tags=["shed"])


@router.get("/sheds/{shed_id}/commands")
async def poll_commands(
    shed: ShedDep,
    ctx: CtxDep,
    after: Annotated[int, Query(ge=0, description="the highest seq the shed has")] = 0,
    wait: Annotated[
        float, Query(ge=0, description="seconds to wait for a command (capped at 30)")
    ] = 0,
) -> CommandsAnswer:
    """Commands with seq > `after`, at once if there are any, else as soon as
    one arrives within `wait` seconds; maybe none."""
    shed_id = shed.id

    def fetch_sync() -> Sequence[CommandView]:
        with ctx.sessions() as db, db.begin():
            found = take_commands(db, shed_id, after, now_ms=ctx.now_ms())
            return [
                CommandView(id=c.id, seq=c.seq, kind=c.kind, created_ms=c.created_ms, data=c.data)
                for c in found
            ]

    async def fetch() -> Sequence[CommandView]:
        return await run_in_threadpool(fetch_sync)

    timeout = min(wait, ctx.settings.long_poll_max_s)
    commands = await ctx.waiters.wait(shed_id, after, timeout, fetch)
    return CommandsAnswer(commands=list(commands))


@router.post("/sheds/{shed_id}/commands/{command_id}/result")
def command_result(
    shed: ShedDep,
    command_id: Annotated[str, Path(min_length=1, max_length=40)],
    body: CommandResultIn,
    ctx: CtxDep,
    db: DbDep,
) -> dict[str, bool]:
    """Record what the shed did. Once: the same result again is fine (200), a
    different one is `409 result_conflict`."""
    with db.begin():
        record_command_result(db, shed.id, command_id, body, now_ms=ctx.now_ms(), hooks=ctx.hooks)
    return {"ok": True}
