"""What the bridges share: the clock and sink they are given, small asyncio helpers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Protocol, Self

from firmware_bridge.messages import DeviceMessage

log = logging.getLogger(__name__)


class Clock(Protocol):
    """What a bridge needs of `controller.clock` clocks: timestamps (ms since the
    epoch), and sleeping (simulated time in tests and the demo)."""

    def now_ms(self) -> int: ...

    async def sleep(self, seconds: float) -> None: ...


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
