"""The app factory.

    uvicorn --factory api.main:create_app_from_env

`create_app(settings)` builds everything from the settings it is given
(tests pass their own, plus a clock and hooks); no app, engine or settings
exist at import time.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from api.clock import NowMs, wall_ms
from api.context import AppContext
from api.db import check_schema, make_engine, make_sessionmaker, upgrade
from api.errors import install_error_handlers
from api.routes import api_router, health_router
from api.services.command_waiters import CommandWaiters
from api.services.hooks import Hooks
from api.settings import ApiSettings

log = logging.getLogger(__name__)

DESCRIPTION = """\
Central service of the e-bike charging shed system: sheds of many compounds,
the records they report (docs/uplink-contract.md), the commands they fetch.
Errors are problem responses `{"code": ..., "message": ...}`; `code` is stable.
"""


def create_app(
    settings: ApiSettings, *, now_ms: NowMs | None = None, hooks: Hooks | None = None
) -> FastAPI:
    engine = make_engine(
        settings.database_url,
        echo=settings.sql_echo,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    sessions = make_sessionmaker(engine)
    waiters = CommandWaiters(sessions, interval_s=settings.command_poll_interval_ms / 1000)
    ctx = AppContext(
        settings=settings,
        engine=engine,
        sessions=sessions,
        now_ms=now_ms or wall_ms,
        hooks=hooks or Hooks(),
        waiters=waiters,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.auto_migrate:
            await run_in_threadpool(upgrade, settings.database_url)
        else:
            await run_in_threadpool(check_schema, engine)
        await waiters.start()
        try:
            yield
        finally:
            await waiters.stop()
            engine.dispose()

    app = FastAPI(
        title="ebshed central API",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    app.include_router(api_router)
    app.include_router(health_router)
    return app


def create_app_from_env() -> FastAPI:
    """The ASGI factory for uvicorn: settings from EBSHED_API_* variables."""
    return create_app(ApiSettings())
