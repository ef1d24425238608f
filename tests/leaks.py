"""A pytest plugin: the `no_leaks` fixture, which fails a test that leaves
tasks, threads or open file descriptors behind (the habit pymodbus's suite has).

Use it with `pytest_plugins = ["tests.leaks"]` and a `no_leaks` argument.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator

import pytest

# Worker threads of a thread pool are told to stop when the task that started
# them ends (AnyIO's run_sync, the loop's default executor); give them this
# long to be gone before calling them a leak.
THREAD_EXIT_S = 5.0


def open_fds() -> set[int]:
    listed = os.listdir("/proc/self/fd")  # the listing's own descriptor is gone after it
    return {int(fd) for fd in listed if os.path.exists(f"/proc/self/fd/{fd}")}


def _threads_left(before: set[threading.Thread]) -> set[threading.Thread]:
    deadline = time.monotonic() + THREAD_EXIT_S
    for thread in set(threading.enumerate()) - before:
        thread.join(max(0.0, deadline - time.monotonic()))  # nothing in the loop to wait for
    return set(threading.enumerate()) - before


@pytest.fixture
async def no_leaks() -> AsyncIterator[None]:
    threads = set(threading.enumerate())
    fds = open_fds()
    yield
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current and not t.done()] == []
    # connecting to 127.0.0.1 resolves the address in the loop's default executor
    await asyncio.get_running_loop().shutdown_default_executor()
    assert _threads_left(threads) == set()
    assert open_fds() - fds == set()
