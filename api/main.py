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

from api.boundary import Boundary
from api.clock import NowMs, wall_ms
from api.context import AppContext
from api.db import check_schema, make_engine, make_sessionmaker, upgrade
from api.errors import install_error_handlers
from api.metrics import install_metrics
from api.payments import PaymentGateway
from api.routes import api_router, health_router
from api.routes import auth as auth_routes
from api.routes import consultations as consultation_routes
from api.routes import money as money_routes
from api.routes import notify as notify_routes
from api.routes import orders as order_routes
from api.routes import orders_admin as order_admin_routes
from api.routes import public as public_routes
from api.routes import reports as report_routes
from api.routes import staff as staff_routes
from api.services.audit import with_staff_hooks
from api.services.command_waiters import CommandWaiters
from api.services.hooks import Hooks
from api.services.orders_gateway import gateway_from_settings, with_order_hooks
from api.services.orders_workers import OrdersRuntime
from api.services.sms import SmsSender
from api.services.staff_runtime import StaffRuntime
from api.settings import ApiSettings
from api.web import web_router
from api.web.consultation_page import router as consultation_web_router
from api.web.money_page import router as money_web_router
from api.web.reports import router as reports_web_router
from api.web.staff import router as staff_web_router

log = logging.getLogger(__name__)

DESCRIPTION = """\
Central service of the e-bike charging shed system: sheds of many compounds,
the records they report (docs/uplink-contract.md), the commands they fetch.
Errors are problem responses `{"code": ..., "message": ...}`; `code` is stable.
"""


def create_app(
    settings: ApiSettings,
    *,
    now_ms: NowMs | None = None,
    hooks: Hooks | None = None,
    gateway: PaymentGateway | None = None,
    sms_sender: SmsSender | None = None,
) -> FastAPI:
    """`gateway`: the payment provider adapter (tests and demos hand one in);
    by default built from the EBSHED_API_PAY_* settings, if `pay_base_url` is set.
    `sms_sender`: default, the simulated outbox (api/services/sms.py)."""
    engine = make_engine(
        settings.database_url,
        echo=settings.sql_echo,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    sessions = make_sessionmaker(engine)
    waiters = CommandWaiters(sessions, interval_s=settings.command_poll_interval_ms / 1000)
    clock = now_ms or wall_ms
    own_gateway = gateway is None
    if gateway is None:
        gateway = gateway_from_settings(settings, clock)
    orders = OrdersRuntime(settings, sessions, clock, gateway, own_gateway=own_gateway)
    staff = StaffRuntime(settings, sessions, clock)
    ctx = AppContext(
        settings=settings,
        engine=engine,
        sessions=sessions,
        now_ms=clock,
        hooks=with_staff_hooks(with_order_hooks(hooks or Hooks())),
        waiters=waiters,
        orders=orders,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.auto_migrate:
            await run_in_threadpool(upgrade, settings.database_url)
        else:
            await run_in_threadpool(check_schema, engine)
        await waiters.start()
        await orders.start()
        await staff.start()
        try:
            yield
        finally:
            await staff.stop()
            await orders.stop()
            await waiters.stop()
            engine.dispose()

    app = FastAPI(
        title="ebshed central API",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.sms_sender = sms_sender
    app.state.staff = staff  # the board's live push, API alarms (docs/staff-board.md)
    install_error_handlers(app)
    app.add_middleware(Boundary, settings=settings)  # body limits, CSRF, headers
    install_metrics(app, ctx)  # GET /metrics (docs/telemetry.md)
    app.include_router(api_router)
    app.include_router(health_router)
    # Scan-to-pay (docs/scan-to-pay.md): residents' JSON API and the provider's notify_url.
    for router in (
        public_routes.router,
        order_routes.router,
        auth_routes.router,
        order_admin_routes.router,
        staff_routes.router,  # accounts and the staff board (docs/staff-board.md)
    ):
        app.include_router(router, prefix="/api/v1")
    app.include_router(notify_routes.router)
    app.include_router(web_router)  # the resident pages (docs/resident-pages.md)
    app.include_router(staff_web_router)  # login and the staff board (docs/staff-board.md)
    # Community office reports (docs/reports.md): JSON and downloads, and the pages.
    app.include_router(report_routes.router, prefix="/api/v1")
    app.include_router(reports_web_router)
    # The shed's public money page (docs/money-page.md): JSON, page and monthly PDF.
    app.include_router(money_routes.router, prefix="/api/v1")
    app.include_router(consultation_routes.router, prefix="/api/v1")
    app.include_router(money_web_router)
    app.include_router(consultation_web_router)
    return app


def create_app_from_env() -> FastAPI:
    """The ASGI factory for uvicorn: settings from EBSHED_API_* variables."""
    return create_app(ApiSettings())
