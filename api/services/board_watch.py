"""Push for the staff board across API workers, without a broker.

Every transaction that changes what the board shows of a shed bumps that
shed's row in `board_marks` (api/repos/board.py: `bump`). A board stream
(an SSE connection, api/web/staff_board.py) subscribes to its sheds here and
is woken:

- at once, when this worker commits such a change (an `after_commit`
  listener reads the sheds the transaction bumped);
- within `interval_s`, when another worker did: one query per interval reads
  the marks of every shed some stream in this worker watches, and wakes the
  streams of those whose mark moved.

The same design as the command long poll (decision 0006); decision 0009
says why the board uses server-sent events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.repos import board

log = logging.getLogger(__name__)
_WATCH_KEY: Final = "ebshed.board_watch"


@dataclass(eq=False, slots=True)
class Subscription:
    sheds: frozenset[str]
    changed: set[str] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self) -> set[str]:
        """The sheds that changed since the last take."""
        self.wake.clear()
        changed, self.changed = self.changed, set()
        return changed


class BoardWatch:
    def __init__(self, sessions: sessionmaker[Session], interval_s: float) -> None:
        self._sessions = sessions
        self._interval_s = interval_s
        self._subs: set[Subscription] = set()
        self._seen: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.closing = False
        sessions.configure(info={**sessions.kw.get("info", {}), _WATCH_KEY: self})
        event.listen(sessions, "after_commit", _after_commit)
        event.listen(sessions, "after_soft_rollback", _after_rollback)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.closing = False
        self._task = asyncio.create_task(self._watch(), name="board-watch")

    async def stop(self) -> None:
        """Stop watching; every stream is woken and sees `closing`."""
        self.closing = True
        for sub in self._subs:
            sub.wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def subscribe(self, sheds: Iterable[str]) -> Subscription:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        sub = Subscription(frozenset(sheds))
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def notify(self, sheds: Iterable[str]) -> None:
        """Wake the streams of `sheds` (safe from any thread)."""
        loop, changed = self._loop, set(sheds)
        if loop is None or loop.is_closed() or not changed:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake(changed)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake, changed)

    def _wake(self, changed: set[str]) -> None:
        for sub in self._subs:
            mine = changed & sub.sheds
            if mine:
                sub.changed |= mine
                sub.wake.set()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            watched = set().union(*(s.sheds for s in self._subs)) if self._subs else set()
            if not watched:
                continue
            try:
                seqs = await run_in_threadpool(self._read, watched)
            except Exception:  # a database hiccup must not end the watcher
                log.warning("board watch: cannot read the marks", exc_info=True)
                continue
            moved = {s for s, seq in seqs.items() if self._seen.get(s) != seq}
            self._seen.update(seqs)
            self._wake(moved)

    def _read(self, sheds: set[str]) -> dict[str, int]:
        with self._sessions() as db:
            return board.marks(db, sheds)


def _after_commit(db: Session) -> None:
    changed: set[str] | None = db.info.pop(board.CHANGED_KEY, None)
    watch: Any = db.info.get(_WATCH_KEY)
    if changed and isinstance(watch, BoardWatch):
        watch.notify(changed)


def _after_rollback(db: Session, _previous: Any) -> None:
    if not db.in_transaction():
        db.info.pop(board.CHANGED_KEY, None)
