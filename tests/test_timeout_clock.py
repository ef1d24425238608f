"""Protocol timeouts last real seconds on a sped-up clock, simulated ones on a stepped clock.

A command's ack timeout protects real hardware: on the demo's clock (60 times
wall time) it must still give a board 5 real seconds to answer, not 83 ms. A
stepped `SimClock` times it itself, so tests and `--speed max` decide when a
board that does not answer has timed out.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import aiomqtt

from controller.clock import RealClock, SimClock
from firmware_bridge.messages import CmdAck, PortCommand
from firmware_bridge.mqtt_adapter import MqttBridge, MqttSettings
from firmware_bridge.mqtt_codec import MqttCodec
from firmware_bridge.tasks import timeout_clock
from simulators.scaled_clock import ScaledClock
from tests.brokers import mqtt_broker_address

T0 = 1_780_000_000_000


def test_a_sped_up_clock_times_out_at_wall_speed() -> None:
    now = [100.0]
    clock = ScaledClock(T0, 60.0, monotonic=lambda: now[0])
    timer = timeout_clock(clock)
    sim0, real0 = clock.now_ms(), timer.now_ms()
    now[0] += 5.0
    assert clock.now_ms() - sim0 == 300_000  # five real seconds are five simulated minutes
    assert timer.now_ms() - real0 == 5_000  # and five seconds on the timeout clock


def test_stepped_and_real_clocks_time_out_on_themselves() -> None:
    sim, real = SimClock(T0), RealClock()
    assert timeout_clock(sim) is sim
    assert timeout_clock(real) is real


async def test_bridge_on_a_sped_up_clock_waits_real_seconds_for_an_ack() -> None:
    """At 600x a 0.6 s ack timeout would be 1 ms of simulated-clock time: the
    command must still wait 0.6 real seconds before it is given up."""
    host, port = mqtt_broker_address()
    shed = f"t-{uuid.uuid4().hex[:12]}"
    results: list[CmdAck] = []
    clock = ScaledClock(T0, 600.0)
    bridge = MqttBridge(
        MqttSettings(host, port, client_id=f"ctl-{shed}", ack_timeout_s=0.6, max_attempts=1,
                     tick_s=0.05, timeout_s=2.0, stop_grace_s=2.0),
        MqttCodec(shed, range(1, 13)), clock,
        lambda msg: results.append(msg) if isinstance(msg, CmdAck) else None,
    )
    # a board that never answers, listening to see the command leave once
    async with aiomqtt.Client(host, port) as board, bridge:
        await board.subscribe(f"ebs/v1/{shed}/port/+/cmd", qos=1)
        async with asyncio.timeout(3):
            await bridge.wait_connected()
        sent = time.monotonic()
        bridge.send_command(PortCommand(3, "c-real-1", "on", 300, 1000))
        async with asyncio.timeout(3):
            await anext(aiter(board.messages))
        async with asyncio.timeout(3):
            while not results:  # noqa: ASYNC110  # the sink is a plain list, no event
                await asyncio.sleep(0.01)
        waited = time.monotonic() - sent
    assert results == [CmdAck(port=3, id="c-real-1", ok=False, relay=False, error="timeout")]
    assert 0.55 <= waited < 1.5, waited
    assert bridge.counters()["commands_sent"] == 1
