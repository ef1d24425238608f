"""The export's writer: one background thread that sends batches of points.

It takes up to `batch_points` from the buffer every `flush_s` (or at once when
a whole batch is waiting) and writes them with influxdb-client's synchronous
write API (InfluxDB v2 `/api/v2/write`; victoria-metrics takes it too). The
controller's event loop never waits for it: a slow store holds up this thread
only, for at most `timeout_s` per write.

Outcomes, all counted:
- written: the store answered 2xx.
- failed: no answer, a timeout, or an answer retrying can fix (5xx, 429,
  401/403/404 while a token or bucket is being set up). The batch goes back
  to the front of the buffer and the next try waits (1 s doubling to
  `retry_max_s`); points are lost only when the buffer overflows meanwhile
  (`dropped{reason="buffer_full"}`).
- rejected: the store refused the points themselves (400, 413, 422); sending
  them again cannot help, so they are dropped (`dropped{reason="rejected"}`).
- at shutdown, one last flush is tried unless the store is failing; what is
  left is dropped (`dropped{reason="shutdown"}`).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.settings import TelemetrySettings
from controller.telemetry_buffer import PointBuffer
from controller.telemetry_points import TsPoint
from controller.uplink import Backoff

log = logging.getLogger("ebshed.telemetry")

REJECTED_STATUSES = frozenset((400, 413, 422))


class WriteFailed(Exception):
    """A write did not succeed. `retry` False: the store refused the points themselves."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


WriteFn = Callable[[Sequence[TsPoint]], None]


class InfluxWrite:
    """Writes points through influxdb-client (imported here: only a shed that exports pays
    for the import, about 12 MB)."""

    def __init__(self, settings: TelemetrySettings) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.domain.write_precision import WritePrecision

        self._ms = WritePrecision.MS
        self._bucket, self._org = settings.bucket, settings.org
        # The client's methods carry no type hints: held as Any.
        self._client: Any = InfluxDBClient(
            url=settings.url,
            token=settings.token,
            org=settings.org,
            timeout=round(settings.timeout_s * 1000),
        )
        self._api: Any = self._client.write_api(write_options=SYNCHRONOUS)

    def __call__(self, points: Sequence[TsPoint]) -> None:
        import urllib3
        from influxdb_client.rest import ApiException

        records = [
            {
                "measurement": p.measurement,
                "tags": dict(p.tags),
                "fields": p.fields(),
                "time": p.ts_ms,
            }
            for p in points
        ]
        try:
            self._api.write(self._bucket, self._org, records, write_precision=self._ms)
        except ApiException as err:
            retry = err.status not in REJECTED_STATUSES
            raise WriteFailed(f"store answered {err.status} {err.reason}", retry=retry) from err
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise WriteFailed(f"{type(err).__name__}: {err}", retry=True) from err

    def close(self) -> None:
        self._api.close()
        self._client.close()


@dataclass(slots=True)
class WriterCounts:
    points_written: int = 0
    batches_written: int = 0
    write_failures: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {"rejected": 0, "shutdown": 0})
    last_success_s: float | None = None  # wall time of the last successful write
    last_error: str | None = None


class TelemetryWriter:
    """The thread. `start()`, `wake()` when a batch is waiting, `request_stop()` then `join()`."""

    def __init__(
        self,
        buffer: PointBuffer[TsPoint],
        write: WriteFn,
        *,
        batch_points: int,
        flush_s: float,
        retry_max_s: float,
        rng: random.Random | None = None,
    ) -> None:
        self.buffer = buffer
        self._write = write
        self.batch_points = batch_points
        self.flush_s = flush_s
        self.backoff = Backoff(rng or random.Random(), min(1.0, retry_max_s), retry_max_s)
        self.counts = WriterCounts()
        self._failing = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._on_stopped: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._run, name="telemetry-writer", daemon=True)

    @property
    def failing(self) -> bool:
        return self._failing

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """A whole batch is waiting: write now (not while waiting out a failure)."""
        if not self._failing:
            self._wake.set()

    def request_stop(self, on_stopped: Callable[[], None] | None = None) -> None:
        """Ask the thread to end; `on_stopped` is called from it once it has."""
        self._on_stopped = on_stopped
        self._stop.set()
        self._wake.set()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            if self._on_stopped is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    self._on_stopped()

    def _loop(self) -> None:
        delay = self.flush_s
        while not self._stop.is_set():
            self._wake.wait(delay)
            self._wake.clear()
            if self._stop.is_set():
                break
            delay = self._flush()
        if not self._failing:
            self._flush()
        left = len(self.buffer.take(len(self.buffer)))
        if left:
            self.counts.dropped["shutdown"] += left
            log.warning("telemetry export stopped with %d point(s) unsent", left)

    def _flush(self) -> float:
        """Write everything that is waiting; the delay before the next try."""
        while batch := self.buffer.take(self.batch_points):
            try:
                self._write(batch)
            except WriteFailed as err:
                if not err.retry:
                    self.counts.dropped["rejected"] += len(batch)
                    log.error("telemetry store rejected %d point(s): %s", len(batch), err)
                    continue
                return self._failed(batch, str(err))
            except Exception as err:  # a bug must not end the thread; the batch is kept
                log.exception("telemetry write raised")
                return self._failed(batch, f"{type(err).__name__}: {err}")
            self.counts.points_written += len(batch)
            self.counts.batches_written += 1
            self.counts.last_success_s = time.time()
            if self._failing:
                self._failing = False
                log.info(
                    "telemetry store reachable again after %d failed write(s)",
                    self.counts.write_failures,
                )
            self.backoff.ok()
            if self._stop.is_set() and len(self.buffer) == 0:
                break
        return self.flush_s

    def _failed(self, batch: list[TsPoint], error: str) -> float:
        self.buffer.put_back(batch)
        self.counts.write_failures += 1
        self.counts.last_error = error
        if not self._failing:
            self._failing = True
            log.warning("telemetry write failed (%s); points kept and retried", error)
        return self.backoff.failed()
