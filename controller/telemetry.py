"""Telemetry export: the shed's state, sampled, buffered and written off the control path.

What runs where:
- on the controller's event loop, every `interval_s` of the controller's clock:
  one snapshot of every socket, bay and the shed (`Sampler.snapshot`, about
  a millisecond for 200 sockets) goes into a bounded buffer. Alarms go in the
  moment they change (a service listener), smoke/temperature/water reports the
  moment they arrive (the bridge's message observer). Nothing is done per raw
  meter sample.
- on the writer thread (controller/telemetry_writer.py): batches go out to the
  store. A slow or absent store never reaches the loop; points are kept until
  the buffer overflows, and every lost point is counted.

Configured by the `[telemetry]` section of the shed config; off when absent.
Schema and setup: docs/telemetry.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Any

from controller.clock import Clock
from controller.core.model import Action, AlarmChanged
from controller.service import ControllerService
from controller.settings import TelemetrySettings
from controller.telemetry_buffer import PointBuffer
from controller.telemetry_points import Sampler, TsPoint
from controller.telemetry_writer import InfluxWrite, TelemetryWriter, WriteFn
from firmware_bridge.messages import DeviceMessage, EnvReading

log = logging.getLogger("ebshed.telemetry")


class TelemetryExport:
    """`async with export:` runs the sampling task and the writer thread."""

    def __init__(
        self,
        settings: TelemetrySettings,
        service: ControllerService,
        clock: Clock,
        write: WriteFn | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.clock = clock
        self.sampler = Sampler(service.core.layout)
        self.buffer: PointBuffer[TsPoint] = PointBuffer(settings.buffer_points)
        self._influx: InfluxWrite | None = None
        if write is None:
            self._influx = write = InfluxWrite(settings)
        self.writer = TelemetryWriter(
            self.buffer,
            write,
            batch_points=settings.batch_points,
            flush_s=settings.flush_s,
            retry_max_s=settings.retry_max_s,
        )
        self.samples = 0
        self._overflowing = False
        self._task: asyncio.Task[None] | None = None
        service.add_listener(self.on_action)

    # ---- inputs (event loop) -------------------------------------------------

    def sample(self) -> None:
        """Snapshot the shed now and queue it."""
        self.samples += 1
        self._put(self.sampler.snapshot(self.service.core, self.clock.now_ms()))

    def on_action(self, action: Action) -> None:
        if isinstance(action, AlarmChanged):
            self._put([self.sampler.alarm(action.alarm, self.clock.now_ms())])

    def on_message(self, msg: DeviceMessage) -> None:
        """The bridge's observer: every message but meter samples."""
        if isinstance(msg, EnvReading):
            self._put([self.sampler.env(msg, self.clock.now_ms())])

    def _put(self, points: list[TsPoint]) -> None:
        dropped = self.buffer.put(points)
        if dropped and not self._overflowing:
            log.warning("telemetry buffer full (%d points): dropping the oldest", len(self.buffer))
        self._overflowing = dropped > 0
        if len(self.buffer) >= self.settings.batch_points:
            self.writer.wake()

    async def run(self) -> None:
        """Sample on every multiple of `interval_s` of the controller's clock."""
        every_ms = self.settings.interval_s * 1000
        while True:
            await self.clock.sleep((every_ms - self.clock.now_ms() % every_ms) / 1000)
            self.sample()

    # ---- what it did -----------------------------------------------------------

    def counters(self) -> dict[str, Any]:
        c = self.writer.counts
        return {
            "samples": self.samples,
            "points_queued": self.buffer.accepted,
            "points_written": c.points_written,
            "batches_written": c.batches_written,
            "write_failures": c.write_failures,
            "dropped": {"buffer_full": self.buffer.dropped, **c.dropped},
            "buffered": len(self.buffer),
            "failing": self.writer.failing,
            "last_success_s": c.last_success_s,
            "last_error": c.last_error,
        }

    # ---- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> TelemetryExport:
        self.writer.start()
        self._task = asyncio.create_task(self.run(), name="telemetry-sampler")
        log.info(
            "telemetry export to %s (bucket %s) every %d s",
            self.settings.url,
            self.settings.bucket,
            self.settings.interval_s,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        # The thread ends after at most one last write (bounded by timeout_s);
        # wait for it without blocking the loop.
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()

        def on_stopped() -> None:  # called from the writer thread
            loop.call_soon_threadsafe(stopped.set)

        self.writer.request_stop(on_stopped)
        if self.writer.alive():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), 2 * self.settings.timeout_s + 1)
        self.writer.join(0.5)
        if self.writer.alive():
            log.warning("telemetry writer still busy at shutdown; left to end on its own")
        elif self._influx is not None:
            self._influx.close()
