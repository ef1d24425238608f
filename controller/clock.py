"""Clocks: the one thing every timed part of the system is given, never takes.

`RealClock` is wall time. `SimClock` is simulated time shared by the
simulators and the controller in one process: `advance()` moves it forward and
wakes every sleeper whose deadline has passed, so an 8-hour charge runs in
milliseconds. Times are integer milliseconds since the Unix epoch.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class SimClock:
    """Simulated time. Sleepers wake when `advance` passes their deadline."""

    def __init__(self, start_ms: int) -> None:
        self._now = start_ms
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now_ms(self) -> int:
        return self._now

    async def sleep(self, seconds: float) -> None:
        deadline = self._now + max(0, round(seconds * 1000))
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._order), fut))
        await fut

    def next_deadline(self) -> int | None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    def advance_to(self, t_ms: int) -> int:
        """Move to `t_ms` (never backwards); wake due sleepers; return how many woke."""
        self._now = max(self._now, t_ms)
        woke = 0
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)
                woke += 1
        return woke

    def advance(self, seconds: float) -> int:
        return self.advance_to(self._now + round(seconds * 1000))
