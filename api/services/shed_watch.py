"""Waking what waits in this API worker on a shed, across workers, without a broker.

The database is the truth. A transaction that changes something a waiter
cares about marks the shed in the session (`mark_after_commit`) and moves a
per-shed sequence number in the database. A `ShedWatch` then wakes this
worker's waiters of that shed:

- at once, when this worker commits the transaction (a SQLAlchemy
  `after_commit` listener reads the sheds it marked; a rollback forgets them);
- within `interval_s`, when another worker or process did: one query per
  interval reads the sequence numbers of every shed some waiter in this worker
  watches (nothing at all while nobody waits).

Two watches are built on it: the command long poll (`command_waiters.py`,
decision 0006) and the staff board's streams (`board_watch.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)
_WATCHES: Final = "ebshed.shed_watches"  # in the sessions' info: key -> the watch


def mark_after_commit(db: Session, key: str, shed_id: str) -> None:
    """Have the watch listening on `key` wake `shed_id`'s waiters once `db` commits."""
    marked: set[str] = db.info.setdefault(key, set())
    marked.add(shed_id)


class ShedWatch:
    """The watcher task and the commit hook; subclasses keep the waiters.

    A subclass says which sheds are watched (`watched`), how to read their
    sequence numbers (`read_seqs`), what to do with them (`seqs_read`), whom
    to wake after a commit (`wake`) and how to let every waiter go (`release`).
    """

    def __init__(self, sessions: sessionmaker[Session], interval_s: float, key: str) -> None:
        self._sessions = sessions
        self._interval_s = interval_s
        self._key = key
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.closing = False
        # The newest watch of a key on these sessions is the one told (an app made
        # again on the same database replaces the old one's).
        info = sessions.kw.get("info", {})
        sessions.configure(info={**info, _WATCHES: {**info.get(_WATCHES, {}), key: self}})
        if not event.contains(sessions, "after_commit", _after_commit):
            event.listen(sessions, "after_commit", _after_commit)
            event.listen(sessions, "after_soft_rollback", _after_rollback)

    # ------------------------------------------------------------ subclasses

    def watched(self) -> set[str]:
        raise NotImplementedError

    def read_seqs(self, db: Session, sheds: set[str]) -> dict[str, int]:
        raise NotImplementedError

    def seqs_read(self, seqs: dict[str, int]) -> None:
        raise NotImplementedError

    def wake(self, sheds: set[str]) -> None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------ lifecycle

    @property
    def watching(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.closing = False
        self._task = asyncio.create_task(self._watch(), name=type(self).__name__)

    async def stop(self) -> None:
        """Stop watching; every waiter is woken and sees `closing`."""
        self.closing = True
        self.release()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def bind_loop(self) -> None:
        """Remember the running loop (a waiter may come before `start`, or without it)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()

    def notify(self, sheds: Iterable[str]) -> None:
        """Wake this worker's waiters of `sheds`. Safe from any thread."""
        loop, changed = self._loop, set(sheds)
        if loop is None or loop.is_closed() or not changed:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.wake(changed)
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self.wake, changed)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            watched = self.watched()
            if not watched:
                continue
            try:
                seqs = await run_in_threadpool(self._read, watched)
            except Exception:  # a database hiccup must not end the watcher
                log.warning("%s: cannot read the sheds' marks", type(self).__name__,
                            exc_info=True)
                continue
            self.seqs_read(seqs)

    def _read(self, sheds: set[str]) -> dict[str, int]:
        with self._sessions() as db:
            return self.read_seqs(db, sheds)


def _after_commit(db: Session) -> None:
    watches: dict[str, ShedWatch] = db.info.get(_WATCHES, {})
    for key, watch in watches.items():
        marked: set[str] | None = db.info.pop(key, None)
        if marked:
            watch.notify(marked)


def _after_rollback(db: Session, _previous: Any) -> None:
    if not db.in_transaction():
        for key in db.info.get(_WATCHES, {}):
            db.info.pop(key, None)
