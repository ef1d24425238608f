"""What the app is built with: one `AppContext` per app, on `app.state.ctx`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.clock import NowMs
from api.services.command_waiters import CommandWaiters
from api.services.hooks import Hooks
from api.settings import ApiSettings

if TYPE_CHECKING:
    from api.services.orders_workers import OrdersRuntime


@dataclass(frozen=True, slots=True)
class AppContext:
    settings: ApiSettings
    engine: Engine
    sessions: sessionmaker[Session]
    now_ms: NowMs
    hooks: Hooks
    waiters: CommandWaiters
    # Scan-to-pay: the payment gateway and its workers (api/services/orders_workers.py).
    orders: OrdersRuntime | None = None
