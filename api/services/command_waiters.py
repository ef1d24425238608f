"""Long polls for commands that work with several API workers.

The database is the truth. A shed's long poll in this worker waits on an
asyncio event that is set when:

- this worker commits a command for that shed (`wake_after_commit` marks the
  session, a SQLAlchemy `after_commit` listener calls `notify`), at once; or
- the watcher, which reads `sheds.command_seq` of every shed with a waiting
  poll in ONE query every `interval_s`, sees a seq above what the poll has
  (a command enqueued by another worker or process).

So a command reaches a shed at once from the same worker, and within one
interval (default 200 ms) from any other. Only sheds that are waiting cost a
query, and only one per interval for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.repos import sheds as shed_repo

log = logging.getLogger(__name__)

_WAKE_KEY: Final = "ebshed.wake_sheds"
_WAITERS_KEY: Final = "ebshed.command_waiters"
T = TypeVar("T")


@dataclass(eq=False, slots=True)
class _Waiter:
    after_seq: int
    event: asyncio.Event = field(default_factory=asyncio.Event)


class CommandWaiters:
    """The long polls waiting in this worker, and the watcher that wakes them."""

    def __init__(self, sessions: sessionmaker[Session], interval_s: float) -> None:
        self._sessions = sessions
        self._interval_s = interval_s
        self._waiting: dict[str, set[_Waiter]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        sessions.configure(info={**sessions.kw.get("info", {}), _WAITERS_KEY: self})
        event.listen(sessions, "after_commit", _after_commit)
        event.listen(sessions, "after_soft_rollback", _after_rollback)

    @property
    def watching(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._task = asyncio.create_task(self._watch(), name="command-watcher")

    async def stop(self) -> None:
        """Stop watching and let every waiting poll answer now."""
        self._closing = True
        for waiters in self._waiting.values():
            for waiter in waiters:
                waiter.event.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def notify(self, shed_id: str) -> None:
        """Wake this worker's polls of `shed_id`. Safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake(shed_id, None)
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._wake, shed_id, None)

    async def wait(
        self,
        shed_id: str,
        after_seq: int,
        timeout_s: float,
        fetch: Callable[[], Awaitable[Sequence[T]]],
    ) -> Sequence[T]:
        """`fetch()` until it finds something, a wake-up at a time, at most `timeout_s`."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        deadline = loop.time() + timeout_s
        waiter = _Waiter(after_seq)
        self._waiting.setdefault(shed_id, set()).add(waiter)
        try:
            while True:
                waiter.event.clear()  # before fetch: a wake-up during fetch is kept
                found = await fetch()
                remaining = deadline - loop.time()
                if found or remaining <= 0 or self._closing:
                    return found
                # Without the watcher (no lifespan), check the database ourselves.
                step = remaining if self.watching else min(remaining, self._interval_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.event.wait(), step)
        finally:
            waiters = self._waiting.get(shed_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiting[shed_id]

    def _wake(self, shed_id: str, seq: int | None) -> None:
        for waiter in self._waiting.get(shed_id, ()):
            if seq is None or seq > waiter.after_seq:
                waiter.event.set()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            if not self._waiting:
                continue
            try:
                seqs = await run_in_threadpool(self._read_seqs, list(self._waiting))
            except Exception:  # a database hiccup must not end the watcher
                log.warning("command watcher: cannot read command seqs", exc_info=True)
                continue
            for shed_id, seq in seqs.items():
                self._wake(shed_id, seq)

    def _read_seqs(self, shed_ids: list[str]) -> dict[str, int]:
        with self._sessions() as db:
            return shed_repo.command_seqs(db, shed_ids)


def wake_after_commit(db: Session, shed_id: str) -> None:
    """Wake `shed_id`'s long polls in this worker once `db` commits."""
    pending: set[str] = db.info.setdefault(_WAKE_KEY, set())
    pending.add(shed_id)


def _after_commit(db: Session) -> None:
    pending: set[str] | None = db.info.pop(_WAKE_KEY, None)
    waiters: Any = db.info.get(_WAITERS_KEY)
    if pending and isinstance(waiters, CommandWaiters):
        for shed_id in pending:
            waiters.notify(shed_id)


def _after_rollback(db: Session, _previous: Any) -> None:
    if not db.in_transaction():
        db.info.pop(_WAKE_KEY, None)
