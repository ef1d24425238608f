"""Small asyncio helpers shared by the bridges."""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Any, Self

log = logging.getLogger(__name__)


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
