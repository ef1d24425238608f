"""A wall clock sped up N times, for running simulators (and a demo) at `--speed`.

Implements the `controller.clock.Clock` protocol. The real time source is
injected (`monotonic`), so tests can drive it. Its `timeouts` clock runs at
wall speed: the bridges time command acks and re-sends on it
(`firmware_bridge.tasks.timeout_clock`), so a sped-up demo gives a board as
long to answer as a real shed does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class ScaledClock:
    """Simulated time that runs `speed` times faster than wall time from `start_ms`."""

    def __init__(
        self,
        start_ms: int,
        speed: float = 1.0,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._start_ms = start_ms
        self._monotonic = monotonic
        self._t0 = monotonic()
        self._timeouts = WallSpeedClock(monotonic)

    @property
    def timeouts(self) -> WallSpeedClock:
        """The same time source at wall speed (milliseconds of `monotonic`)."""
        return self._timeouts

    def now_ms(self) -> int:
        return self._start_ms + int((self._monotonic() - self._t0) * 1000.0 * self.speed)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)


class WallSpeedClock:
    """Milliseconds of a monotonic time source; sleeps are real seconds."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic

    def now_ms(self) -> int:
        return int(self._monotonic() * 1000.0)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
