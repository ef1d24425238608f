"""Telemetry export through the real controller: simulated boards over the real
Mosquitto, the controller's sampling and writer thread, influxdb-client, and a
real victoria-metrics (or a store that is absent or hangs)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.core.fsm import SocketState
from controller.core.model import Authorization, Session
from controller.telemetry_points import STATE_CODES
from simulators import ebike
from tests.brokers import free_port
from tests.shed_harness import ShedHarness
from tests.telemetry_shed import HOUR_START, ReportingBoard, export_of, telemetry_shed, until
from tests.victoria import StallingStore, VictoriaMetrics

CARD = "04A1B2C3"  # known to the harness shed, 1000 fen


@pytest.fixture
def vm() -> Iterator[VictoriaMetrics]:
    with VictoriaMetrics() as server:
        yield server


def reported(h: ShedHarness) -> dict[int, dict[str, Any]]:
    assert isinstance(h.board, ReportingBoard)
    return {p: dict(r) for p, r in h.board.reported.items()}


def one_shed(series: dict[Any, dict[int, float]], **labels: str) -> dict[int, float]:
    """The samples of the one series with these labels."""
    found = [v for k, v in series.items() if set(labels.items()) <= set(k)]
    assert len(found) == 1, (labels, list(series))
    return found[0]


async def test_what_victoria_metrics_holds_is_what_the_boards_reported(
    tmp_path: Path, vm: VictoriaMetrics
) -> None:
    telemetry = {"url": vm.url, "interval_s": 3600, "flush_s": 0.1}
    async with telemetry_shed(tmp_path, telemetry, start_ms=HOUR_START) as h:
        export = export_of(h)
        rng = random.Random(5)
        t = h.clock.now_ms()
        await h.publish(h.board.plug(1, ebike.lead_acid(rng, soc=0.5), t))
        await h.publish(h.board.plug(2, ebike.lithium(rng, soc=0.3), t))
        await h.publish(h.board.tap_card(1, CARD, t))
        started = h.service.start_session(2, Authorization("order", "o-tel", 500))
        assert isinstance(started, Session)
        truth: list[tuple[int, dict[int, dict[str, Any]], dict[int, SocketState]]] = []
        for _ in range(12):  # two minutes, a sample after every step
            await h.run(10)
            if len(truth) == 6:
                await h.publish(h.bay.set_occupied(True, h.clock.now_ms()), h.bay)
            export.sample()
            states = {p: port.state for p, port in h.service.core.ports.items()}
            truth.append((h.clock.now_ms(), reported(h), states))
        shed = h.shed
        await until(lambda: export.counters()["points_written"] == export.buffer.accepted)
        c = export.counters()
        assert c["write_failures"] == 0 and sum(c["dropped"].values()) == 0

    power = vm.series(f'ebshed_socket_power_w{{shed="{shed}"}}')
    energy = vm.series(f'ebshed_socket_energy_wh{{shed="{shed}"}}')
    temp = vm.series(f'ebshed_socket_temp_c{{shed="{shed}"}}')
    state = vm.series(f'ebshed_socket_state{{shed="{shed}"}}')
    relay = vm.series(f'ebshed_socket_relay{{shed="{shed}"}}')
    shed_power = one_shed(vm.series(f'ebshed_shed_power_w{{shed="{shed}"}}'))
    bay = one_shed(vm.series(f'ebshed_bay_occupied{{shed="{shed}"}}'), bay="1", port="1")
    for ts, boards, states in truth:
        for port, r in boards.items():
            labels = {"port": str(port), "board": "b1"}
            assert one_shed(power, **labels)[ts] == r["w"]
            assert one_shed(energy, **labels)[ts] == r["wh"]
            assert one_shed(temp, **labels)[ts] == r["temp_c"]
            assert one_shed(relay, **labels)[ts] == int(r["relay"])
            assert one_shed(state, **labels)[ts] == STATE_CODES[states[port]]
        assert shed_power[ts] == pytest.approx(sum(r["w"] for r in boards.values()), abs=0.11)
    _, last, last_states = truth[-1]
    assert last_states[1] is SocketState.CHARGING and last_states[2] is SocketState.CHARGING
    assert last[1]["w"] > 50 and last[2]["w"] > 50  # real charging power went out
    assert [bay[ts] for ts, _, _ in truth] == [0.0] * 6 + [1.0] * 6


async def test_the_loop_samples_on_the_interval_and_alarms_go_out_as_they_happen(
    tmp_path: Path, vm: VictoriaMetrics
) -> None:
    telemetry = {"url": vm.url, "interval_s": 20, "flush_s": 0.1}
    async with telemetry_shed(tmp_path, telemetry) as h:
        export = export_of(h)
        start = h.clock.now_ms() - 10_000  # the harness ran one step already
        await h.run(60)
        smoke_at = h.clock.now_ms()
        await h.publish(h.smoke.set_smoke(True, smoke_at), h.smoke)
        alarm = next(a for a in h.service.core.alarms.values() if a.kind == "smoke")
        await h.run(60)
        ack_at = h.clock.now_ms()
        assert h.service.acknowledge(alarm.id, "staff-1", "checked") is None
        await h.run(40)
        end, shed = h.clock.now_ms(), h.shed
        await until(lambda: export.counters()["points_written"] == export.buffer.accepted)

    samples = one_shed(vm.series(f'ebshed_shed_sockets_free{{shed="{shed}"}}'))
    assert sorted(samples) == list(range(start + 20_000, end + 1, 20_000))
    assert export.samples == len(samples)
    active = one_shed(vm.series(f'ebshed_alarm_active{{shed="{shed}",kind="smoke"}}'))
    acked = one_shed(vm.series(f'ebshed_alarm_acked{{shed="{shed}",kind="smoke"}}'))
    assert active[smoke_at] == 1 and acked[smoke_at] == 0
    assert acked[ack_at] == 1
    env = one_shed(vm.series(f'ebshed_env_alarm{{shed="{shed}",sensor="smoke-1"}}'))
    assert env[smoke_at] == 1
    # The periodic count agrees: one active alarm from the smoke on.
    counts = one_shed(vm.series(f'ebshed_shed_alarms_active{{shed="{shed}"}}'))
    assert {ts: v for ts, v in counts.items() if ts > smoke_at} == dict.fromkeys(
        [ts for ts in counts if ts > smoke_at], 1.0
    )
    assert all(v == 0 for ts, v in counts.items() if ts < smoke_at)


async def test_an_absent_store_never_delays_control_and_nothing_is_lost_silently(
    tmp_path: Path,
) -> None:
    port = free_port()  # no store there yet: connection refused
    telemetry = {
        "url": f"http://127.0.0.1:{port}",
        "interval_s": 10,
        "flush_s": 0.1,
        "retry_max_s": 0.3,
        "buffer_points": 150,  # 7 points a sample: overflows after 21 samples
        "batch_points": 50,
    }
    async with telemetry_shed(tmp_path, telemetry) as h:
        export = export_of(h)
        start = h.clock.now_ms() - 10_000
        t = h.clock.now_ms()
        await h.publish(h.board.plug(1, ebike.lead_acid(random.Random(2), soc=0.4), t))
        await h.publish(h.board.tap_card(1, CARD, t))
        await h.run(10)
        assert h.board.relay(1)  # the card tap switched the relay on
        assert h.service.core.ports[1].state is SocketState.CHARGING
        await h.run(290)
        await until(lambda: export.counters()["write_failures"] >= 2, what="failed writes")
        # The one-second tick kept its pace: every sample and lease renewal on time.
        assert export.samples == (h.clock.now_ms() - start) // 10_000
        lease = h.board.lease_deadline_ms(1)
        assert lease is not None and lease > h.clock.now_ms() + 200_000
        c = export.counters()
        assert c["points_written"] == 0 and c["buffered"] == 150
        assert c["dropped"]["buffer_full"] == export.buffer.accepted - 150 > 0

        with VictoriaMetrics(port) as vm:  # the store comes back
            await until(lambda: export.counters()["buffered"] == 0, what="the buffer written")
            last = h.clock.now_ms()
            shed_power = one_shed(vm.series(f'ebshed_shed_power_w{{shed="{h.shed}"}}'))
        c = export.counters()
        assert c["points_written"] + c["dropped"]["buffer_full"] == export.buffer.accepted
        assert not c["failing"] and c["last_success_s"] is not None
        # The newest points were kept, without a gap up to the last sample.
        kept = sorted(shed_power)
        assert kept[-1] == last and kept == list(range(kept[0], last + 1, 10_000))
        assert kept[0] > start + 10_000  # the oldest went when the buffer was full


async def test_a_store_that_hangs_never_delays_control(tmp_path: Path) -> None:
    with StallingStore() as store:
        telemetry = {"url": store.url, "interval_s": 10, "flush_s": 0.1, "timeout_s": 1.0}
        async with telemetry_shed(tmp_path, telemetry) as h:
            export = export_of(h)
            start = h.clock.now_ms() - 10_000
            await until(store.got_request.is_set, what="a write to the store")
            # The writer thread is now waiting on the store; control goes on.
            t = h.clock.now_ms()
            await h.publish(h.board.plug(3, ebike.lithium(random.Random(4), soc=0.2), t))
            await h.publish(h.board.tap_card(3, CARD, t))
            await h.run(10)
            assert h.board.relay(3) and h.service.core.ports[3].state is SocketState.CHARGING
            await h.run(120)
            assert export.samples == (h.clock.now_ms() - start) // 10_000
            await until(lambda: export.counters()["write_failures"] >= 1, what="a timeout")
            c = export.counters()
            assert c["points_written"] == 0 and sum(c["dropped"].values()) == 0
            assert c["buffered"] == export.buffer.accepted
            queued = export.buffer.accepted
        # Stopped while the store hangs: what was never written is counted, not lost silently.
        assert export.counters()["dropped"]["shutdown"] == queued
