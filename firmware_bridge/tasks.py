"""What the bridges share: the clock and sink they are given, small asyncio helpers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from firmware_bridge.messages import DeviceMessage

log = logging.getLogger(__name__)


class Clock(Protocol):
    """What a bridge needs of `controller.clock` clocks: timestamps (ms since the
    epoch), and sleeping (simulated time in tests and the demo)."""

    def now_ms(self) -> int: ...

    async def sleep(self, seconds: float) -> None: ...


@runtime_checkable
class FastClock(Protocol):
    """A clock that runs faster than wall time (the demo's `--speed`). Its
    `timeouts` clock runs at wall speed."""

    @property
    def timeouts(self) -> Clock: ...


def timeout_clock(clock: Clock) -> Clock:
    """The clock a bridge times its protocol on: ack deadlines, re-sends, outbox
    expiry, log rate limits.

    These protect real hardware, so they must last as long as on a real shed,
    whatever the simulated speed: a clock running N times faster than wall
    time (`FastClock`) hands over its wall-speed `timeouts` clock. Any other
    clock times them itself: wall time in production, and a stepped simulated
    clock in tests and at `--speed max`, where nothing happens between steps
    and a board that does not answer is part of the scenario.
    """
    return clock.timeouts if isinstance(clock, FastClock) else clock


Sink = Callable[[DeviceMessage], Awaitable[None] | None]
"""Receives every valid device message, and failed command results. May be sync or async."""


async def cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel and await the tasks still running (a finished one keeps its result)."""
    running = [task for task in tasks if not task.done()]
    for task in running:
        task.cancel()
    results = await asyncio.gather(*running, return_exceptions=True)
    for task, result in zip(running, results, strict=True):
        if isinstance(result, Exception):
            log.error("task %s failed while stopping", task.get_name(), exc_info=result)


class StartStop:
    """`async with bridge:` for a bridge that has `start()` and `await stop()`."""

    def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
