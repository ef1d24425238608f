"""Shared helpers of the Modbus tests (no tests here): a simulated bus with a bridge on it.

`running_shed()` puts `ModbusSimBoard`s on a `SimModbusBus` (a pty with real
wire timing), opens a `ModbusBridge` on its tty path and collects what the
bridge delivers. Board time is a `SimClock` that tests move by hand; the wire
runs in real time at 115200 baud unless a test is about wire time.

`leak_check()` fails a test that leaves tasks, threads or file descriptors
(serial ports, ptys) behind; every Modbus test module uses it through an
autouse fixture.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from controller.clock import SimClock
from firmware_bridge.messages import (
    BoardStatus,
    CmdAck,
    DeviceMessage,
    PortEvent,
    Telemetry,
)
from firmware_bridge.modbus_bridge import ModbusBridge, ModbusBusSettings
from simulators.modbus_board import ModbusSimBoard
from simulators.modbus_bus import SimModbusBus

T0 = 1_795_341_000_000
VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "fixtures/contracts/modbus-rtu-board-v1.json").read_text("utf-8")
)
FAST: dict[str, Any] = {
    "baud": 115200,
    "parity": "N",  # a pty has no parity: 8N2, 11 bits a character like 8E1
    "stopbits": 2,
    "poll_interval_s": 0.0,
    "timeout_s": 0.05,
    "probe_interval_s": 0.1,
    "bus_id": "test",
}


def _fds() -> set[int]:
    """Open file descriptors (not counting the one that lists them)."""
    listed = os.listdir("/proc/self/fd")
    return {int(fd) for fd in listed if os.path.exists(f"/proc/self/fd/{fd}")}


@contextmanager
def thread_and_fd_check() -> Iterator[None]:
    """Fail if the body leaves threads running or file descriptors open."""
    threads = set(threading.enumerate())
    fds = _fds()
    yield
    new_threads = [t for t in threading.enumerate() if t not in threads and t.is_alive()]
    assert not new_threads, f"threads left running: {new_threads}"
    leaked = _fds() - fds
    assert not leaked, f"file descriptors left open: {leaked}"


@asynccontextmanager
async def leak_check() -> AsyncIterator[None]:
    """Fail if the body leaves tasks, threads or file descriptors behind."""
    with thread_and_fd_check():
        yield
        await asyncio.sleep(0)
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        assert not tasks, f"tasks left running: {tasks}"


def ports_of(slave: int, sockets: int = 12) -> tuple[int, ...]:
    """Shed ports of the board at `slave` in these tests: 12 per board, in slave order."""
    return tuple(range((slave - 1) * 12 + 1, (slave - 1) * 12 + 1 + sockets))


class Shed:
    """A running bus and bridge, and everything the bridge delivered, in order."""

    def __init__(
        self,
        clock: SimClock,
        bus: SimModbusBus,
        settings: ModbusBusSettings,
        also: Callable[[DeviceMessage], None] | None = None,
    ) -> None:
        self.clock = clock
        self.bus = bus
        self.msgs: list[DeviceMessage] = []
        self._also = also
        self.bridge = ModbusBridge(settings, clock, self.sink)
        self._changed = asyncio.Event()

    def sink(self, msg: DeviceMessage) -> None:
        self.msgs.append(msg)
        self._changed.set()
        if self._also is not None:
            self._also(msg)

    def board(self, slave: int) -> ModbusSimBoard:
        return self.bus.board(slave)

    def telemetry(self, port: int) -> list[Telemetry]:
        return [m for m in self.msgs if isinstance(m, Telemetry) and m.port == port]

    def last(self, port: int) -> Telemetry:
        return self.telemetry(port)[-1]

    def events(self, port: int | None = None, kind: str | None = None) -> list[PortEvent]:
        return [
            m
            for m in self.msgs
            if isinstance(m, PortEvent)
            and (port is None or m.port == port)
            and (kind is None or m.type == kind)
        ]

    def acks(self, cmd_id: str | None = None) -> list[CmdAck]:
        return [m for m in self.msgs if isinstance(m, CmdAck) and cmd_id in (None, m.id)]

    def statuses(self, board: str) -> list[BoardStatus]:
        return [m for m in self.msgs if isinstance(m, BoardStatus) and m.board == board]

    async def until(self, check: Callable[[], object], timeout_s: float = 5.0) -> None:
        """Wait (real time) until `check()` is true; checked after every delivered message."""
        async with asyncio.timeout(timeout_s):
            while not check():
                self._changed.clear()
                await self._changed.wait()

    async def cycles(self, n: int = 1, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            await self.bridge.wait_cycles(n)

    async def advance(self, seconds: float, step_s: float = 1.0) -> None:
        """Move board time on in steps, with a poll cycle after each step."""
        left = seconds
        while left > 0:
            step = min(step_s, left)
            self.clock.advance(step)
            left -= step
            await self.cycles(1)


@asynccontextmanager
async def running_shed(
    sockets: dict[int, int] | None = None,
    *,
    seed: int = 1,
    board_kw: dict[str, Any] | None = None,
    bus_kw: dict[str, Any] | None = None,
    start: bool = True,
    clock: SimClock | None = None,
    also: Callable[[DeviceMessage], None] | None = None,
    **settings_kw: Any,
) -> AsyncIterator[Shed]:
    """Boards {slave: sockets} (default two of 12) on one simulated bus, and a bridge on it.

    The bridge's messages are kept in `shed.msgs` and also given to `also`.
    """
    layout = sockets or {1: 12, 2: 12}
    clock = clock or SimClock(T0)
    rng = random.Random(seed)
    boards = [
        ModbusSimBoard(slave, n, rng=rng, start_ms=T0, **(board_kw or {}))
        for slave, n in layout.items()
    ]
    options = {**FAST, **settings_kw}
    async with SimModbusBus(boards, clock, baud=options["baud"], **(bus_kw or {})) as bus:
        settings = ModbusBusSettings(
            bus.device,
            boards={s: (f"b{s}", ports_of(s, n)) for s, n in layout.items()},
            **options,
        )
        shed = Shed(clock, bus, settings, also)
        if start:
            async with shed.bridge:
                yield shed
        else:
            try:
                yield shed
            finally:
                await shed.bridge.stop()
