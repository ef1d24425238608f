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
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from api.repos import board
from api.services.shed_watch import ShedWatch


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


class BoardWatch(ShedWatch):
    def __init__(self, sessions: sessionmaker[Session], interval_s: float) -> None:
        super().__init__(sessions, interval_s, board.CHANGED_KEY)
        self._subs: set[Subscription] = set()
        self._seen: dict[str, int] = {}

    def subscribe(self, sheds: Iterable[str]) -> Subscription:
        self.bind_loop()
        sub = Subscription(frozenset(sheds))
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def watched(self) -> set[str]:
        return set().union(*(s.sheds for s in self._subs)) if self._subs else set()

    def read_seqs(self, db: Session, sheds: set[str]) -> dict[str, int]:
        return board.marks(db, sheds)

    def seqs_read(self, seqs: dict[str, int]) -> None:
        moved = {s for s, seq in seqs.items() if self._seen.get(s) != seq}
        self._seen.update(seqs)
        self.wake(moved)

    def wake(self, sheds: set[str]) -> None:
        for sub in self._subs:
            mine = sheds & sub.sheds
            if mine:
                sub.changed |= mine
                sub.wake.set()

    def release(self) -> None:
        for sub in self._subs:
            sub.wake.set()
