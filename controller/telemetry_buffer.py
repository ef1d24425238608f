"""A bounded, thread-safe buffer of points between the controller's loop and the writer.

The loop puts points in (a few hundred every interval, never blocking); the
writer thread takes batches out and, when a write fails, puts the batch back
in front so that it goes out first next time. The buffer never holds more than
`capacity` points: when it is full the oldest points are dropped, and every
dropped point is counted. Nothing else ever loses a point.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class PointBuffer(Generic[T]):
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self.dropped = 0  # points dropped because the buffer was full
        self.accepted = 0  # points ever put in

    def __len__(self) -> int:
        return len(self._items)

    def put(self, items: Iterable[T]) -> int:
        """Append; returns how many of the oldest points were dropped to make room."""
        with self._lock:
            before = len(self._items)
            self._items.extend(items)
            self.accepted += len(self._items) - before
            return self._trim_oldest()

    def take(self, limit: int) -> list[T]:
        """Remove and return up to `limit` points, oldest first."""
        with self._lock:
            n = min(limit, len(self._items))
            return [self._items.popleft() for _ in range(n)]

    def put_back(self, items: Sequence[T]) -> int:
        """Return a batch that could not be written to the front (it is older than
        what came in meanwhile). Returns how many points were dropped to fit."""
        with self._lock:
            self._items.extendleft(reversed(items))
            return self._trim_oldest()

    def _trim_oldest(self) -> int:
        over = len(self._items) - self.capacity
        if over <= 0:
            return 0
        for _ in range(over):
            self._items.popleft()
        self.dropped += over
        return over
