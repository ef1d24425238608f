"""Time for the API: one injected callable giving milliseconds since the Unix epoch."""

from __future__ import annotations

import time
from collections.abc import Callable

NowMs = Callable[[], int]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000
