"""Small asyncio helpers shared by the bridges."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

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
