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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from api.repos import sheds as shed_repo
from api.services.shed_watch import ShedWatch, mark_after_commit

_WAKE_KEY: Final = "ebshed.wake_sheds"
T = TypeVar("T")


@dataclass(eq=False, slots=True)
class _Waiter:
    after_seq: int
    event: asyncio.Event = field(default_factory=asyncio.Event)


class CommandWaiters(ShedWatch):
    """The long polls waiting in this worker, and the watcher that wakes them."""

    def __init__(self, sessions: sessionmaker[Session], interval_s: float) -> None:
        super().__init__(sessions, interval_s, _WAKE_KEY)
        self._waiting: dict[str, set[_Waiter]] = {}

    async def wait(
        self,
        shed_id: str,
        after_seq: int,
        timeout_s: float,
        fetch: Callable[[], Awaitable[Sequence[T]]],
    ) -> Sequence[T]:
        """`fetch()` until it finds something, a wake-up at a time, at most `timeout_s`."""
        self.bind_loop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        waiter = _Waiter(after_seq)
        self._waiting.setdefault(shed_id, set()).add(waiter)
        try:
            while True:
                waiter.event.clear()  # before fetch: a wake-up during fetch is kept
                found = await fetch()
                remaining = deadline - loop.time()
                if found or remaining <= 0 or self.closing:
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

    def watched(self) -> set[str]:
        return set(self._waiting)

    def read_seqs(self, db: Session, sheds: set[str]) -> dict[str, int]:
        return shed_repo.command_seqs(db, list(sheds))

    def seqs_read(self, seqs: dict[str, int]) -> None:
        for shed_id, seq in seqs.items():
            for waiter in self._waiting.get(shed_id, ()):
                if seq > waiter.after_seq:
                    waiter.event.set()

    def wake(self, sheds: set[str]) -> None:
        for shed_id in sheds:
            for waiter in self._waiting.get(shed_id, ()):
                waiter.event.set()

    def release(self) -> None:
        for waiters in self._waiting.values():
            for waiter in waiters:
                waiter.event.set()


def wake_after_commit(db: Session, shed_id: str) -> None:
    """Wake `shed_id`'s long polls in this worker once `db` commits."""
    mark_after_commit(db, _WAKE_KEY, shed_id)
