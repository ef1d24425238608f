"""The writer thread and influxdb-client against real servers: victoria-metrics, a
port nobody listens on, a store that never answers and one that refuses the points."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from controller.settings import TelemetrySettings
from controller.telemetry_buffer import PointBuffer
from controller.telemetry_points import SOCKET, TsPoint
from controller.telemetry_writer import InfluxWrite, TelemetryWriter
from tests.brokers import free_port
from tests.core_helpers import T0
from tests.victoria import AnsweringStore, StallingStore, VictoriaMetrics, wait_until

TAGS = (("board", "b1"), ("port", "7"), ("shed", "w-test"))


def points(n: int, first: int = 0) -> list[TsPoint]:
    """A socket's readings every second: power, a growing register, no temperature."""
    return [
        TsPoint(SOCKET, TAGS, (100.0 + i % 7 / 4, 5000 + i, 0, None, 3, 1, 1), T0 + i * 1000)
        for i in range(first, first + n)
    ]


def settings(url: str, **kw: float) -> TelemetrySettings:
    values = {"url": url, "flush_s": 0.1, "timeout_s": 2.0, "retry_max_s": 0.2, **kw}
    return TelemetrySettings.model_validate(values)


class Running:
    """A writer thread and its buffer, stopped and joined at the end."""

    def __init__(self, s: TelemetrySettings) -> None:
        self.buffer: PointBuffer[TsPoint] = PointBuffer(s.buffer_points)
        self.write = InfluxWrite(s)
        self.writer = TelemetryWriter(
            self.buffer,
            self.write,
            batch_points=s.batch_points,
            flush_s=s.flush_s,
            retry_max_s=s.retry_max_s,
            rng=random.Random(1),
        )

    def __enter__(self) -> Running:
        self.writer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.writer.request_stop()
        self.writer.join(10)
        assert not self.writer.alive()
        self.write.close()


@pytest.fixture
def vm() -> Iterator[VictoriaMetrics]:
    with VictoriaMetrics() as server:
        yield server


def test_batches_reach_victoria_metrics_exactly(vm: VictoriaMetrics) -> None:
    sent = points(12_000)
    with Running(settings(vm.url, batch_points=5000)) as w:
        w.buffer.put(sent)
        w.writer.wake()
        wait_until(lambda: w.writer.counts.points_written == len(sent), what="all written")
    c = w.writer.counts
    assert (c.batches_written, c.write_failures, c.dropped) == (
        3,
        0,
        {"rejected": 0, "shutdown": 0},
    )

    power = vm.series('ebshed_socket_power_w{shed="w-test"}')
    energy = vm.series('ebshed_socket_energy_wh{shed="w-test"}')
    labels = (("board", "b1"), ("port", "7"), ("shed", "w-test"))
    assert power[labels] == {p.ts_ms: p.values[0] for p in sent}
    assert energy[labels] == {p.ts_ms: p.values[1] for p in sent}
    assert vm.series('ebshed_socket_temp_c{shed="w-test"}') == {}  # unknown: not written


def test_an_absent_store_keeps_the_points_until_it_comes_back() -> None:
    port = free_port()  # nobody listens: connection refused
    with Running(settings(f"http://127.0.0.1:{port}")) as w:
        w.buffer.put(points(300))
        wait_until(lambda: w.writer.counts.write_failures >= 3, what="failed writes")
        assert w.writer.failing and w.writer.counts.points_written == 0
        assert len(w.buffer) == 300 and w.buffer.dropped == 0
        assert "ConnectionRefused" in str(w.writer.counts.last_error) or "Connection" in str(
            w.writer.counts.last_error
        )
        with VictoriaMetrics(port) as vm:
            wait_until(lambda: w.writer.counts.points_written == 300, what="recovery")
            assert not w.writer.failing and len(w.buffer) == 0
            series = vm.series('ebshed_socket_energy_wh{shed="w-test"}')
            assert sorted(next(iter(series.values())).values()) == [5000 + i for i in range(300)]


def test_a_full_buffer_while_the_store_is_away_drops_the_oldest_with_a_count() -> None:
    port = free_port()
    with Running(settings(f"http://127.0.0.1:{port}", buffer_points=100, batch_points=50)) as w:
        first, later = points(80), points(60, first=80)
        w.buffer.put(first)
        wait_until(lambda: w.writer.counts.write_failures >= 1, what="a failed write")
        w.buffer.put(later)
        assert w.buffer.dropped == 40
        with VictoriaMetrics(port) as vm:
            wait_until(lambda: len(w.buffer) == 0, what="the buffer written")
            series = vm.series('ebshed_socket_energy_wh{shed="w-test"}')
    kept = sorted(next(iter(series.values())).values())
    assert kept == [p.values[1] for p in (first + later)[40:]]  # the newest 100
    assert w.writer.counts.points_written + w.buffer.dropped == 140


def test_points_the_store_refuses_are_dropped_with_a_count_not_retried() -> None:
    with AnsweringStore(400) as store, Running(settings(store.url, batch_points=100)) as w:
        w.buffer.put(points(250))
        w.writer.wake()
        wait_until(lambda: w.writer.counts.dropped["rejected"] == 250, what="rejected")
        assert store.requests == 3 and w.writer.counts.write_failures == 0
        assert len(w.buffer) == 0 and w.writer.counts.points_written == 0


def test_a_server_error_is_retried() -> None:
    with AnsweringStore(503) as store, Running(settings(store.url)) as w:
        w.buffer.put(points(10))
        wait_until(lambda: store.requests >= 2, what="a retry")
        assert w.writer.counts.dropped["rejected"] == 0 and len(w.buffer) == 10
        assert "503" in str(w.writer.counts.last_error)


def test_a_store_that_never_answers_costs_one_timeout_per_try() -> None:
    with StallingStore() as store, Running(settings(store.url, timeout_s=0.3)) as w:
        w.buffer.put(points(10))
        wait_until(lambda: w.writer.counts.write_failures >= 2, what="timeouts")
        assert store.requests >= 2 and len(w.buffer) == 10
        assert "Timeout" in str(w.writer.counts.last_error)


def test_stopping_while_the_store_is_away_counts_what_is_left() -> None:
    port = free_port()
    w = Running(settings(f"http://127.0.0.1:{port}"))
    with w:
        w.buffer.put(points(25))
        wait_until(lambda: w.writer.counts.write_failures >= 1, what="a failed write")
    assert w.writer.counts.dropped["shutdown"] == 25 and len(w.buffer) == 0
