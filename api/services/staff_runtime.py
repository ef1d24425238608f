"""What the staff board runs in each API worker: the board watch (live push)
and the sweep that raises and clears "shed offline" alarms (and, every few
minutes, forgets login and rate-limit counters older than a day)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.clock import NowMs
from api.services import throttle
from api.services.api_alarms import sweep_offline
from api.services.board_watch import BoardWatch
from api.settings import ApiSettings

log = logging.getLogger(__name__)
FORGET_EVERY_MS = 600_000


class StaffRuntime:
    """Built by `create_app`; on `app.state.staff`."""

    def __init__(self, settings: ApiSettings, sessions: sessionmaker[Session], now_ms: NowMs):
        self.settings = settings
        self.sessions = sessions
        self.now_ms = now_ms
        self.watch = BoardWatch(sessions, settings.board_poll_interval_ms / 1000)
        self._task: asyncio.Task[None] | None = None
        self._forgot_ms: int | None = None

    async def start(self) -> None:
        await self.watch.start()
        self._task = asyncio.create_task(self._sweep_forever(), name="api-alarms")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.watch.stop()

    def sweep_once(self) -> list[str]:
        """One sweep of "shed offline" alarms; the sheds whose alarms changed."""
        now = self.now_ms()
        with self.sessions.begin() as db:
            changed = sweep_offline(
                db, now_ms=now, offline_after_ms=self.settings.shed_offline_after_s * 1000
            )
            if self._forgot_ms is None or now - self._forgot_ms >= FORGET_EVERY_MS:
                throttle.forget_old(db, now)
                self._forgot_ms = now
            return changed

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await run_in_threadpool(self.sweep_once)
            except Exception:  # keep sweeping after a database hiccup
                log.warning("shed offline sweep failed", exc_info=True)
            await asyncio.sleep(self.settings.api_alarm_interval_s)
