"""MqttDeviceRunner against a real broker: commands, retained status, last will, stepping.

Uses the shared Mosquitto (127.0.0.1:1883, or EBSHED_TEST_MQTT=host:port);
without one a test is skipped, except in CI (CI=true), where it fails. Each
test has a shed id of its own and clears the retained topics it leaves.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
import pytest

from controller.clock import SimClock
from simulators.board import SimBoard
from simulators.ebike import lead_acid
from simulators.mqtt_runner import BrokerUnavailable, MqttDeviceRunner
from simulators.scaled_clock import ScaledClock
from simulators.sensors import BaySensor, EnvSensor
from tests.brokers import TcpProxy, free_port, mqtt_broker_address

pytest_plugins = ["tests.leaks"]

pytestmark = pytest.mark.broker

T0 = 1_795_341_000_000
Address = tuple[str, int]




@pytest.fixture
def broker(no_leaks: None) -> Address:
    return mqtt_broker_address()


@pytest.fixture
async def shed(broker: Address) -> AsyncIterator[str]:
    """A shed id of its own; its retained topics are cleared afterwards."""
    shed = f"t-{uuid.uuid4().hex[:12]}"
    yield shed
    async with aiomqtt.Client(*broker) as client:
        for board in ("b1", "b2"):
            await client.publish(f"ebs/v1/{shed}/board/{board}/status", b"", qos=1, retain=True)
        for bay in (1, 2):
            await client.publish(f"ebs/v1/{shed}/bay/{bay}/occupancy", b"", qos=1, retain=True)


class Inbox:
    """A test peer's received messages, with a wait for the next one that matches."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.received: list[aiomqtt.Message] = []

    async def next(
        self, match: Callable[[aiomqtt.Message], bool], timeout_s: float = 5.0
    ) -> aiomqtt.Message:
        async with asyncio.timeout(timeout_s):
            async for message in self.client.messages:
                self.received.append(message)
                if match(message):
                    return message
        raise AssertionError("unreachable")

    async def collect(self, count: int, timeout_s: float = 5.0) -> list[aiomqtt.Message]:
        async with asyncio.timeout(timeout_s):
            while len(self.received) < count:
                self.received.append(await anext(self.client.messages))
        return self.received


@asynccontextmanager
async def peer(broker: Address, *filters: str) -> AsyncIterator[Inbox]:
    async with aiomqtt.Client(*broker, identifier=f"test-{uuid.uuid4().hex[:10]}") as client:
        for topic_filter in filters:
            await client.subscribe(topic_filter, qos=1)
        yield Inbox(client)


def on_topic(topic: str) -> Callable[[aiomqtt.Message], bool]:
    return lambda m: m.topic.value == topic


def body(message: aiomqtt.Message) -> dict[str, Any]:
    assert isinstance(message.payload, bytes | bytearray)
    value: dict[str, Any] = json.loads(message.payload)
    return value


def make_board(shed: str, board_id: str = "b1", ports: range = range(1, 13)) -> SimBoard:
    return SimBoard(shed, board_id, ports, rng=random.Random(1), start_ms=T0)


async def test_cmd_via_broker_is_acked_via_broker_exactly_once(broker: Address, shed: str) -> None:
    clock = SimClock(T0)
    board = make_board(shed)
    board.plug(3, lead_acid(random.Random(2), soc=0.2), T0)
    ack_topic = f"ebs/v1/{shed}/port/3/cmd/ack"
    cmd = json.dumps({"id": "c-1", "op": "on", "lease_s": 900, "max_w": 1000})
    async with (
        MqttDeviceRunner(*broker, shed, [board], clock) as runner,
        peer(broker, ack_topic) as inbox,
    ):
        await inbox.client.publish(f"ebs/v1/{shed}/port/3/cmd", cmd, qos=1)
        ack = await inbox.next(on_topic(ack_topic))
        assert body(ack) == {"id": "c-1", "ok": True, "relay": True, "error": None}
        assert ack.qos == 1
        assert board.relay(3)
        clock.advance(60)
        await inbox.client.publish(f"ebs/v1/{shed}/port/3/cmd", cmd, qos=1)  # a retry
        again = await inbox.next(on_topic(ack_topic))
        assert body(again) == body(ack)
        assert runner.commands_handled == 2
        assert (board.commands_executed, board.duplicate_commands) == (1, 1)
        assert board.lease_deadline_ms(3) == T0 + 900_000  # the retry did not renew


async def test_status_is_retained_and_the_will_fires_on_a_power_cut(
    broker: Address, shed: str
) -> None:
    clock = SimClock(T0)
    board = make_board(shed)
    status_topic = f"ebs/v1/{shed}/board/b1/status"
    async with MqttDeviceRunner(*broker, shed, [board], clock) as runner:
        async with peer(broker, status_topic) as late:  # subscribes after the publish
            status = await late.next(on_topic(status_topic))
            assert status.retain
            assert body(status) == {
                "online": True,
                "fw": "1.4.2",
                "ports": list(range(1, 13)),
                "ts": T0,
            }
        async with peer(broker, status_topic) as watcher:
            await watcher.next(on_topic(status_topic))  # the retained online
            clock.advance(10)
            await runner.power_cut("b1")
            will = await watcher.next(on_topic(status_topic))
            assert body(will) == {"online": False}
            assert not runner.connected("b1")
            async with peer(broker, status_topic) as later:
                retained = await later.next(on_topic(status_topic))
                assert retained.retain
                assert body(retained) == {"online": False}
            clock.advance(50)
            await runner.power_restore("b1")
            back = await watcher.next(on_topic(status_topic))
            assert body(back) == {
                "online": True,
                "fw": "1.4.2",
                "ports": list(range(1, 13)),
                "ts": T0 + 60_000,
            }
        assert runner.connected("b1")


async def test_graceful_close_announces_offline(broker: Address, shed: str) -> None:
    status_topic = f"ebs/v1/{shed}/board/b1/status"
    async with MqttDeviceRunner(*broker, shed, [make_board(shed)], SimClock(T0)):
        pass
    async with peer(broker, status_topic) as inbox:
        retained = await inbox.next(on_topic(status_topic))
        assert body(retained) == {"online": False}


async def test_stepped_mode_publishes_everything_and_drain_waits_for_it(
    broker: Address, shed: str
) -> None:
    clock = SimClock(T0)
    rng = random.Random(5)
    boards = [make_board(shed, "b1", range(1, 13)), make_board(shed, "b2", range(13, 25))]
    bays = [BaySensor(shed, n, rng=rng, start_ms=T0) for n in (1, 2)]
    smoke = EnvSensor(shed, "smoke-1", "smoke", rng=rng, start_ms=T0)
    async with peer(broker, f"ebs/v1/{shed}/#") as inbox:
        async with MqttDeviceRunner(*broker, shed, [*boards, *bays, smoke], clock) as runner:
            for port in (1, 5, 14):
                board = boards[0] if port <= 12 else boards[1]
                runner.publish(board, board.plug(port, lead_acid(rng, soc=0.2), T0))
            for port in (1, 5):
                payload = json.dumps({"id": f"on-{port}", "op": "on", "lease_s": 60, "max_w": 1000})
                await inbox.client.publish(f"ebs/v1/{shed}/port/{port}/cmd", payload, qos=1)
            await inbox.next(lambda m: m.topic.value.endswith("/5/cmd/ack"))
            for _ in range(300):
                clock.advance(1.0)
                await runner.step(clock.now_ms())
            runner.publish(bays[0], bays[0].set_occupied(True, clock.now_ms()))
            runner.publish(smoke, smoke.set_smoke(True, clock.now_ms()))
            await runner.drain()
            assert runner.pending == 0
            published = runner.published
            assert runner.publish_failures == 0
        # + our two commands, + the two offline statuses published at close
        received = await inbox.collect(published + 4)
    assert sum(m.topic.value.endswith("/cmd") for m in received) == 2
    topics = [m.topic.value for m in received]
    lease_events = [body(m) for m in received if m.topic.value.endswith("/event")]
    assert sorted(e["ts"] for e in lease_events) == [T0 + 60_000, T0 + 60_000]
    assert {e["type"] for e in lease_events} == {"lease_expired"}
    assert topics.count(f"ebs/v1/{shed}/port/14/telemetry") == 11  # every 30 s, 0..300 s
    port_1 = [body(m) for m in received if m.topic.value == f"ebs/v1/{shed}/port/1/telemetry"]
    assert [s["seq"] for s in port_1] == list(range(len(port_1)))
    assert any(m.topic.value.endswith("/env/smoke-1") and body(m)["alarm"] for m in received)
    assert any(m.topic.value.endswith("/bay/1/occupancy") and body(m)["occupied"] for m in received)


async def test_reboot_with_a_dropped_connection_goes_offline_then_online_with_seq_0(
    broker: Address, shed: str
) -> None:
    clock = SimClock(T0)
    board = make_board(shed, ports=range(1, 3))
    status_topic = f"ebs/v1/{shed}/board/b1/status"
    async with MqttDeviceRunner(*broker, shed, [board], clock) as runner:
        for _ in range(120):
            clock.advance(1.0)
            await runner.step(clock.now_ms())
        async with peer(broker, status_topic, f"ebs/v1/{shed}/port/1/telemetry") as inbox:
            await inbox.next(on_topic(status_topic))
            await runner.reboot_board("b1", drop_connection=True)
            offline = await inbox.next(on_topic(status_topic))
            assert body(offline) == {"online": False}
            online = await inbox.next(on_topic(status_topic))
            assert body(online)["online"] is True
            sample = await inbox.next(lambda m: m.topic.value.endswith("/telemetry"))
            assert body(sample)["seq"] == 0
            await runner.reboot_board("b1")  # keeps the connection
            status = await inbox.next(on_topic(status_topic))
            assert body(status)["online"] is True
        assert board.boots == 3


async def test_real_time_mode_ticks_with_the_clock(broker: Address, shed: str) -> None:
    clock = ScaledClock(T0, speed=100.0)
    board = make_board(shed, ports=range(1, 2))
    board.plug(1, lead_acid(random.Random(3), soc=0.2), T0)
    board.handle(1, json.dumps({"id": "a", "op": "on", "lease_s": 600}).encode(), T0)
    async with (
        peer(broker, f"ebs/v1/{shed}/port/1/telemetry") as inbox,
        MqttDeviceRunner(*broker, shed, [board], clock) as runner,
    ):
        task = asyncio.create_task(runner.run(tick_s=1.0))
        try:
            samples = await inbox.collect(5, timeout_s=5.0)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    ts = [body(m)["ts"] for m in samples]
    assert all(b - a == 2000 for a, b in itertools.pairwise(ts))
    assert all(body(m)["relay"] for m in samples)


async def test_reconnects_after_the_network_drops(broker: Address, shed: str) -> None:
    proxy = TcpProxy(broker)
    await proxy.start()
    clock = SimClock(T0)
    board = make_board(shed)
    status_topic = f"ebs/v1/{shed}/board/b1/status"
    ack_topic = f"ebs/v1/{shed}/port/2/cmd/ack"
    try:
        async with (
            peer(broker, status_topic, ack_topic) as inbox,
            MqttDeviceRunner(
                "127.0.0.1", proxy.port, shed, [board], clock, reconnect_delay_s=0.05
            ) as runner,
        ):
            assert body(await inbox.next(on_topic(status_topic)))["online"] is True
            await proxy.cut()
            assert body(await inbox.next(on_topic(status_topic))) == {"online": False}
            await proxy.restore()
            assert body(await inbox.next(on_topic(status_topic)))["online"] is True
            assert runner.connected("b1")
            cmd = json.dumps({"id": "after", "op": "off"})
            await inbox.client.publish(f"ebs/v1/{shed}/port/2/cmd", cmd, qos=1)
            ack = await inbox.next(on_topic(ack_topic))  # resubscribed
            assert body(ack)["id"] == "after"
    finally:
        await proxy.close()


async def test_an_unreachable_broker_is_a_clear_error(no_leaks: None) -> None:
    board = make_board("t-nobroker")
    runner = MqttDeviceRunner("127.0.0.1", free_port(), "t-nobroker", [board], SimClock(T0))
    with pytest.raises(BrokerUnavailable, match="cannot connect") as caught:
        await runner.start()
    assert caught.value.code == "broker_unavailable"


async def test_thousands_of_messages_per_second(broker: Address, shed: str) -> None:
    clock = SimClock(T0)
    boards = [make_board(shed, "b1", range(1, 101)), make_board(shed, "b2", range(101, 201))]
    async with MqttDeviceRunner(*broker, shed, boards, clock) as runner:
        start = time.perf_counter()
        for _ in range(100):  # 200 ports every 30 s -> 20 boot samples + ~670 samples
            clock.advance(30.0)
            await runner.step(clock.now_ms())
        await runner.drain()
        elapsed = time.perf_counter() - start
        assert runner.published >= 20_000
    assert runner.published / elapsed > 2_000
