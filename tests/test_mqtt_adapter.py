"""The MQTT adapter: command tracking on its own, then the bridge against real Mosquitto.

Broker tests use a unique shed id each, so they never see each other's
traffic. Boards are played by plain aiomqtt clients.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
import pytest

from bench.common import RawPublisher, publish_packet
from controller.clock import RealClock, SimClock
from firmware_bridge.buffered_socket import CHUNK, BufferedSocket
from firmware_bridge.messages import CmdAck, DeviceMessage, PortCommand, PortEvent, Telemetry
from firmware_bridge.mqtt_adapter import ANSWERED_KEPT, CommandTracker, MqttBridge, MqttSettings
from firmware_bridge.mqtt_codec import MqttCodec
from tests.brokers import PrivateMosquitto, TcpProxy, mqtt_broker_address

T0 = 1795341000000
TELEMETRY = b'{"ts":%d,"seq":1,"v":230.0,"a":1.0,"w":230.0,"wh":100,"relay":true}'


def telemetry_now() -> bytes:
    """A valid sample stamped with the real clock (the broker tests run on real time)."""
    return TELEMETRY % RealClock().now_ms()


def on(port: int = 3, cmd_id: str = "c1") -> PortCommand:
    return PortCommand(port, cmd_id, "on", lease_s=900, max_w=1000)


# --------------------------------------------------------------------------- command tracker


def tracker(**kw: int) -> CommandTracker:
    args = {"ack_timeout_ms": 1000, "max_attempts": 3, "outbox_ttl_ms": 30_000, "max_pending": 10}
    args.update(kw)
    return CommandTracker(**args)


def test_tracker_send_ack() -> None:
    t = tracker()
    t.add(on(), T0)
    assert t.poll(T0) == ([on()], [])
    assert t.sent("c1", T0) is False
    assert t.poll(T0 + 999) == ([], [])  # waiting for the ack
    assert t.resolve(CmdAck(4, "c1", True, True)) is False  # same id, other port
    assert t.resolve(CmdAck(3, "c1", True, True)) is True
    assert t.resolve(CmdAck(3, "c1", True, True)) is False  # a second ack resolves nothing
    assert t.answered(CmdAck(3, "c1", True, True))  # ... and is known as a repeat
    assert not t.answered(CmdAck(4, "c1", True, True))
    assert not t.answered(CmdAck(3, "c2", True, True))
    assert len(t) == 0


def test_tracker_remembers_a_bounded_number_of_answers() -> None:
    t = tracker(max_pending=ANSWERED_KEPT + 1)
    for i in range(ANSWERED_KEPT + 1):
        t.add(on(cmd_id=f"c{i}"), T0)
        t.resolve(CmdAck(3, f"c{i}", True, True))
    assert not t.answered(CmdAck(3, "c0", True, True))  # the oldest is forgotten
    assert t.answered(CmdAck(3, "c1", True, True))
    assert t.answered(CmdAck(3, f"c{ANSWERED_KEPT}", True, True))


def test_tracker_retries_with_same_id_then_fails() -> None:
    t = tracker(max_attempts=2)
    t.add(on(), T0)
    t.poll(T0)
    t.sent("c1", T0)
    assert t.poll(T0 + 1000) == ([on()], [])  # timed out: send again
    assert t.sent("c1", T0 + 1000) is True
    assert t.poll(T0 + 1999) == ([], [])
    due, failed = t.poll(T0 + 2000)
    assert due == []
    assert failed == [CmdAck(3, "c1", ok=False, relay=False, error="timeout")]
    assert len(t) == 0


def test_tracker_outbox_ttl_and_bound() -> None:
    t = tracker(max_pending=1, outbox_ttl_ms=5000)
    t.add(on(cmd_id="a"), T0)
    t.add(on(cmd_id="b"), T0)  # no room
    assert t.poll(T0) == ([on(cmd_id="a")], [CmdAck(3, "b", False, False, "outbox_full")])
    assert t.poll(T0 + 5000)[1] == []
    assert t.poll(T0 + 5001) == ([], [CmdAck(3, "a", False, False, "not_sent")])
    t.add(on(cmd_id="x"), T0)
    with pytest.raises(ValueError, match="already pending"):
        t.add(on(cmd_id="x"), T0)


def test_tracker_requeue_after_reconnect() -> None:
    t = tracker()
    t.add(on(), T0)
    t.poll(T0)
    t.sent("c1", T0)
    t.requeue_inflight()
    assert t.poll(T0 + 1) == ([on()], [])
    assert t.sent("unknown", T0) is False  # acked before the publish returned: ignored


# --------------------------------------------------------------------------- helpers


class Collector:
    """A sink that records messages and lets a test wait for a condition."""

    def __init__(self) -> None:
        self.messages: list[DeviceMessage] = []
        self._changed = asyncio.Event()

    def __call__(self, msg: DeviceMessage) -> None:
        self.messages.append(msg)
        self._changed.set()

    def of(self, kind: type[Any]) -> list[Any]:
        return [m for m in self.messages if isinstance(m, kind)]

    async def wait(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(3):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


def new_shed() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def make_bridge(address: tuple[str, int], shed: str, sink: Collector, **kw: Any) -> MqttBridge:
    settings: dict[str, Any] = {
        "client_id": f"ctl-{shed}",
        "version": "test-1",
        "ack_timeout_s": 0.3,
        "max_attempts": 3,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2,
        "tick_s": 0.02,
        "timeout_s": 2.0,
        "stop_grace_s": 2.0,
    }
    settings.update(kw)
    return MqttBridge(
        MqttSettings(address[0], address[1], **settings),
        MqttCodec(shed, range(1, 13)),
        RealClock(),
        sink,
    )


@asynccontextmanager
async def running(bridge: MqttBridge) -> AsyncIterator[MqttBridge]:
    async with bridge:
        async with asyncio.timeout(3):
            await bridge.wait_connected()
        yield bridge


@asynccontextmanager
async def peer(address: tuple[str, int], **kw: Any) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(address[0], address[1], **kw) as client:
        yield client


async def next_message(client: aiomqtt.Client) -> aiomqtt.Message:
    async with asyncio.timeout(3):
        return await anext(aiter(client.messages))


async def disconnected(bridge: MqttBridge) -> None:
    async with asyncio.timeout(3):
        while bridge.connected:  # noqa: ASYNC110  # the bridge has no "disconnected" event
            await asyncio.sleep(0.01)


async def retained_status(address: tuple[str, int], shed: str) -> dict[str, Any]:
    async with peer(address) as p:
        await p.subscribe(f"ebs/v1/{shed}/controller/status", qos=1)
        msg = await next_message(p)
        assert msg.retain
        return json.loads(msg.payload)  # type: ignore[no-any-return]


class FakeBoard:
    """Answers commands of one shed. `policy(cmd, n)` says whether to ack the n-th (1-based)."""

    def __init__(
        self,
        client: aiomqtt.Client,
        shed: str,
        policy: Callable[[dict[str, Any], int], bool] = lambda _c, _n: True,
    ) -> None:
        self.client = client
        self.shed = shed
        self.policy = policy
        self.commands: list[dict[str, Any]] = []

    async def run(self) -> None:
        async for msg in self.client.messages:
            cmd = json.loads(msg.payload)
            self.commands.append(cmd)
            if self.policy(cmd, len(self.commands)):
                ack = {"id": cmd["id"], "ok": True, "relay": cmd["op"] != "off", "error": None}
                await self.client.publish(f"{msg.topic.value}/ack", json.dumps(ack), qos=1)
                # Python 3.11's asyncio.wait_for (inside aiomqtt's publish) drops a cancel
                # that races the PUBACK, and the loop would wait for messages forever.
                if (task := asyncio.current_task()) is not None and task.cancelling():
                    raise asyncio.CancelledError


@asynccontextmanager
async def board(address: tuple[str, int], shed: str, **kw: Any) -> AsyncIterator[FakeBoard]:
    async with peer(address) as client:
        fake = FakeBoard(client, shed, **kw)
        await client.subscribe(f"ebs/v1/{shed}/port/+/cmd", qos=1)
        task = asyncio.create_task(fake.run())
        try:
            yield fake
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def no_tasks_left() -> AsyncIterator[None]:
    """Fail a test that leaves tasks running (the habit pymodbus taught us)."""
    yield
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert left == []


@pytest.fixture
def broker() -> tuple[str, int]:
    return mqtt_broker_address()


@pytest.fixture
async def shed(broker: tuple[str, int]) -> AsyncIterator[str]:
    """A shed id of its own; its retained topics are cleared afterwards."""
    shed = new_shed()
    yield shed
    async with peer(broker) as p:
        for topic in [f"ebs/v1/{shed}/controller/status"] + [
            f"ebs/v1/{shed}/port/{n}/state" for n in range(1, 13)
        ]:
            await p.publish(topic, b"", qos=1, retain=True)


# --------------------------------------------------------------------------- no broker


@pytest.mark.usefixtures("no_tasks_left")
async def test_handle_message_counts_drops_and_unexpected_acks() -> None:
    sink = Collector()
    clock = SimClock(T0)
    bridge = MqttBridge(MqttSettings("unused"), MqttCodec("demo-1", range(1, 13)), clock, sink)
    await bridge.handle_message("ebs/v1/demo-1/port/3/telemetry", b"not json")
    await bridge.handle_message("ebs/v1/demo-1/port/3/telemetry", b'{"ts": 1}')
    await bridge.handle_message(
        "ebs/v1/demo-1/port/3/cmd/ack", b'{"id":"c9","ok":true,"relay":true}'
    )
    bridge.send_command(on())
    await bridge.handle_message(
        "ebs/v1/demo-1/port/4/cmd/ack", b'{"id":"c1","ok":true,"relay":true}'
    )
    await bridge.handle_message(
        "ebs/v1/demo-1/port/3/cmd/ack", b'{"id":"c1","ok":true,"relay":true}'
    )
    # The board acks a re-send of c1 too: a repeat, not delivered again.
    await bridge.handle_message(
        "ebs/v1/demo-1/port/3/cmd/ack", b'{"id":"c1","ok":true,"relay":true}'
    )
    await bridge.handle_message("ebs/v1/demo-1/port/3/telemetry", TELEMETRY % T0)
    assert sink.messages == [CmdAck(3, "c1", True, True), sink.of(Telemetry)[0]]
    counters = bridge.counters()
    assert counters["received"] == 7
    assert counters["delivered"] == 2
    assert counters["dropped"] == 2
    assert counters["dropped.not_json"] == 1
    assert counters["dropped.missing_field"] == 1
    assert counters["unexpected_ack"] == 2
    assert counters["duplicate_ack"] == 1
    assert counters["commands_acked"] == 1
    assert counters["pending_commands"] == 0
    with pytest.raises(ValueError, match="lease_s"):
        bridge.send_command(PortCommand(3, "bad", "on"))


@pytest.mark.usefixtures("no_tasks_left")
async def test_sink_errors_are_counted_not_raised() -> None:
    async def broken(_msg: DeviceMessage) -> None:
        raise RuntimeError("sink bug")

    bridge = MqttBridge(
        MqttSettings("unused"), MqttCodec("demo-1", range(1, 13)), SimClock(T0), broken
    )
    await bridge.handle_message("ebs/v1/demo-1/port/3/telemetry", TELEMETRY % T0)
    assert bridge.counters()["sink_errors"] == 1


# --------------------------------------------------------------------------- shared broker


@pytest.mark.broker
@pytest.mark.usefixtures("no_tasks_left")
async def test_online_status_and_only_own_shed(broker: tuple[str, int], shed: str) -> None:
    sink = Collector()
    async with running(make_bridge(broker, shed, sink)) as bridge:
        status = await retained_status(broker, shed)
        assert status["online"] is True
        assert status["version"] == "test-1"
        assert isinstance(status["ts"], int)
        async with peer(broker) as p:
            other = f"{shed}-x"  # shares the prefix of our shed id
            await p.publish(f"ebs/v1/{other}/port/3/telemetry", telemetry_now(), qos=1)
            await p.publish(f"ebs/v1/{shed}/port/3/cmd", b'{"id":"x","op":"off"}', qos=1)
            await p.publish(f"ebs/v1/{shed}/port/3/state", b"{}", qos=1)
            await p.publish(f"ebs/v1/{shed}/port/3/event", b'{"ts":1,"type":"button"}', qos=1)
            await p.publish(f"ebs/v1/{shed}/port/3/telemetry", telemetry_now(), qos=1)
        await sink.wait(lambda: len(sink.of(Telemetry)) == 1)
        assert sink.messages[0] == PortEvent(3, 1, "button")
        assert bridge.counters()["received"] == 2  # nothing else even reached the bridge
    assert (await retained_status(broker, shed)) == {"online": False}


@pytest.mark.broker
@pytest.mark.usefixtures("no_tasks_left")
async def test_bad_payloads_are_dropped_and_counted(broker: tuple[str, int], shed: str) -> None:
    sink = Collector()
    async with running(make_bridge(broker, shed, sink)) as bridge, peer(broker) as p:
        base = f"ebs/v1/{shed}"
        bad = [
            (f"{base}/port/3/telemetry", b"not json"),
            (f"{base}/port/3/telemetry", b"\xff\xfe{}"),
            (
                f"{base}/port/3/telemetry",
                b'{"ts":1,"seq":1,"v":230,"a":1,"w":9999,"wh":1,"relay":true}',
            ),
            (f"{base}/port/13/telemetry", telemetry_now()),
            (f"{base}/port/3/event", b'{"ts":1,"type":"party"}'),
            (f"{base}/bay/1/occupancy", b'{"ts":1,"occupied":"yes"}'),
            (f"{base}/port/3/telemetry", b"{" + b" " * 70_000 + b"}"),
        ]
        for topic, payload in bad:
            await p.publish(topic, payload, qos=1)
        await p.publish(f"{base}/port/3/telemetry", telemetry_now(), qos=1)
        await sink.wait(lambda: bool(sink.messages))
        assert sink.messages == sink.of(Telemetry)
        assert len(sink.messages) == 1
        counters = bridge.counters()
    assert counters["dropped"] == len(bad)
    assert {k: v for k, v in counters.items() if k.startswith("dropped.")} == {
        "dropped.not_json": 1,
        "dropped.not_utf8": 1,
        "dropped.out_of_range": 1,
        "dropped.unknown_port": 1,
        "dropped.unknown_event_type": 1,
        "dropped.wrong_type": 1,
        "dropped.too_large": 1,
    }


@pytest.mark.broker
@pytest.mark.usefixtures("no_tasks_left")
async def test_telemetry_never_overtakes_an_event(broker: tuple[str, int], shed: str) -> None:
    # Events and acks wait in the queue; telemetry is handled as paho reads it, unless
    # something waits in the queue. A burst arrives in one read (many packets per wake-up).
    sink = Collector()
    base, now = f"ebs/v1/{shed}/port", RealClock().now_ms()
    burst: list[tuple[str, bytes, int]] = []
    for port in (3, 4, 5):
        burst.append((f"{base}/{port}/event", b'{"ts":%d,"type":"button"}' % now, 1))
        for seq in range(1, 6):
            sample = TELEMETRY.replace(b'"seq":1', b'"seq":%d' % (port * 10 + seq)) % now
            burst.append((f"{base}/3/telemetry", sample, 0))
    async with running(make_bridge(broker, shed, sink)) as bridge, peer(broker) as p:
        await asyncio.gather(*(p.publish(t, payload, qos=qos) for t, payload, qos in burst))
        await sink.wait(lambda: len(sink.messages) == len(burst))
        assert bridge.counters()["delivered"] == len(burst)
    seen = [(m.port, "event") if isinstance(m, PortEvent) else m.seq for m in sink.messages]
    expected = []
    for port in (3, 4, 5):
        expected += [(port, "event"), *(port * 10 + seq for seq in range(1, 6))]
    assert seen == expected


@pytest.mark.broker
@pytest.mark.usefixtures("no_tasks_left")
async def test_paho_reads_through_a_buffer(broker: tuple[str, int], shed: str) -> None:
    # The bridge wraps paho's socket through private attributes of aiomqtt and paho
    # (see _buffer_reads): this fails if an upgrade of either moved them.
    async with running(make_bridge(broker, shed, Collector())) as bridge:
        assert bridge._client is not None
        assert isinstance(bridge._client._client.socket(), BufferedSocket)


@pytest.mark.broker
@pytest.mark.usefixtures("no_tasks_left")
async def test_a_flood_does_not_hold_the_event_loop(broker: tuple[str, int], shed: str) -> None:
    # A wake-up handles at most one buffered read (CHUNK bytes) of packets, so under a
    # flood the rest of the controller (the tick, the command sender) still gets turns.
    loop = asyncio.get_running_loop()
    handled, first_turn = 0, []

    def sink(_msg: DeviceMessage) -> None:
        nonlocal handled
        handled += 1
        if handled == 1:  # runs when the reader gives the event loop back
            loop.call_soon(lambda: first_turn.append(handled))

    packet = publish_packet(f"ebs/v1/{shed}/port/3/telemetry".encode(), telemetry_now())
    per_turn = CHUNK // len(packet) + 2  # whole packets of a chunk, and one it splits
    bridge = MqttBridge(MqttSettings(broker[0], broker[1]), MqttCodec(shed, range(1, 13)),
                        RealClock(), sink)  # fmt: skip
    async with running(bridge):
        raw = RawPublisher(broker[0], broker[1], f"flood-{shed}")
        try:
            await asyncio.to_thread(raw.send, packet * 4000)
            async with asyncio.timeout(10):
                while not first_turn or handled < 4 * per_turn:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
        finally:
            raw.close()
    assert first_turn[0] <= per_turn


@pytest.mark.broker
@pytest.mark.usefixtures("no_tasks_left")
async def test_command_and_ack(broker: tuple[str, int], shed: str) -> None:
    sink = Collector()
    async with running(make_bridge(broker, shed, sink)) as bridge, board(broker, shed) as fake:
        bridge.send_command(on(cmd_id="c1"))
        bridge.send_command(PortCommand(5, "c2", "off"))
        await sink.wait(lambda: len(sink.of(CmdAck)) == 2)
        assert sink.of(CmdAck) == [CmdAck(3, "c1", True, True), CmdAck(5, "c2", True, False)]
        assert fake.commands == [
            {"id": "c1", "op": "on", "lease_s": 900, "max_w": 1000},
            {"id": "c2", "op": "off"},
        ]
        # An ack nobody asked for is counted, not delivered.
        await fake.client.publish(
            f"ebs/v1/{shed}/port/3/cmd/ack", b'{"id":"zz","ok":true,"relay":true}', qos=1
        )
        await fake.client.publish(f"ebs/v1/{shed}/port/3/telemetry", telemetry_now(), qos=1)
        await sink.wait(lambda: bool(sink.of(Telemetry)))
        counters = bridge.counters()
    assert len(sink.of(CmdAck)) == 2
    assert counters["unexpected_ack"] == 1
    assert counters["commands_sent"] == 2
    assert counters["commands_acked"] == 2
    assert counters["commands_retried"] == 0
    assert counters["pending_commands"] == 0


@pytest.mark.broker
@pytest.mark.usefixtures("no_tasks_left")
async def test_unacked_command_is_resent_with_the_same_id(
    broker: tuple[str, int], shed: str
) -> None:
    sink = Collector()
    ignore_first = lambda _cmd, n: n > 1  # noqa: E731
    async with (
        running(make_bridge(broker, shed, sink)) as bridge,
        board(broker, shed, policy=ignore_first) as fake,
    ):
        bridge.send_command(on(cmd_id="c-retry"))
        await sink.wait(lambda: bool(sink.of(CmdAck)))
        for _ in range(300):  # the board's ack may come before the broker's PUBACK of the re-send
            if bridge.counters()["commands_sent"] == 2:
                break
            await asyncio.sleep(0.01)
        counters = bridge.counters()
    assert [c["id"] for c in fake.commands] == ["c-retry", "c-retry"]
    assert sink.of(CmdAck) == [CmdAck(3, "c-retry", True, True)]
    assert counters["commands_sent"] == 2
    assert counters["commands_retried"] == 1
    assert counters["commands_acked"] == 1


@pytest.mark.broker
@pytest.mark.usefixtures("no_tasks_left")
async def test_command_never_acked_is_reported_failed(broker: tuple[str, int], shed: str) -> None:
    sink = Collector()
    async with (
        running(make_bridge(broker, shed, sink, ack_timeout_s=0.15, max_attempts=2)) as bridge,
        board(broker, shed, policy=lambda _c, _n: False) as fake,
    ):
        bridge.send_command(on(cmd_id="c-lost"))
        await sink.wait(lambda: bool(sink.of(CmdAck)))
        counters = bridge.counters()
    assert len(fake.commands) == 2
    assert sink.of(CmdAck) == [CmdAck(3, "c-lost", ok=False, relay=False, error="timeout")]
    assert counters["commands_failed"] == 1
    assert counters["pending_commands"] == 0


@pytest.mark.broker
@pytest.mark.usefixtures("no_tasks_left")
async def test_last_will_on_a_dead_connection(broker: tuple[str, int], shed: str) -> None:
    sink = Collector()
    proxy = TcpProxy(broker)
    await proxy.start()
    try:
        async with running(make_bridge(("127.0.0.1", proxy.port), shed, sink)) as bridge:
            async with peer(broker) as watcher:
                await watcher.subscribe(f"ebs/v1/{shed}/controller/status", qos=1)
                assert json.loads((await next_message(watcher)).payload)["online"] is True
                await proxy.cut()  # no DISCONNECT reaches the broker: it fires the will
                msg = await next_message(watcher)
                assert json.loads(msg.payload) == {"online": False}
            assert (await retained_status(broker, shed)) == {"online": False}
            await disconnected(bridge)
            await proxy.restore()
            async with asyncio.timeout(3):
                await bridge.wait_connected()
            assert (await retained_status(broker, shed))["online"] is True
            assert bridge.counters()["reconnects"] == 1
    finally:
        await proxy.close()
    assert (await retained_status(broker, shed)) == {"online": False}


@pytest.mark.broker
@pytest.mark.usefixtures("no_tasks_left")
async def test_cancelled_bridge_still_says_offline(broker: tuple[str, int], shed: str) -> None:
    bridge = make_bridge(broker, shed, Collector())
    task = asyncio.create_task(bridge.run())
    async with asyncio.timeout(3):
        await bridge.wait_connected()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await retained_status(broker, shed)) == {"online": False}


@pytest.mark.broker
@pytest.mark.usefixtures("no_tasks_left")
async def test_port_state_is_published_retained(broker: tuple[str, int], shed: str) -> None:
    sink = Collector()
    async with running(make_bridge(broker, shed, sink)) as bridge:
        bridge.publish_port_state(3, "charging", "s-1", 280.0, 412, T0)
        bridge.publish_port_state(3, "charging", "s-1", 281.0, 413, T0)  # only the newest counts
        async with peer(broker) as p:
            await p.subscribe(f"ebs/v1/{shed}/port/3/state", qos=1)
            msg = await next_message(p)
    assert msg.retain
    assert json.loads(msg.payload) == {
        "state": "charging",
        "session": "s-1",
        "w": 281.0,
        "session_wh": 413,
        "since": T0,
    }


@pytest.mark.broker
@pytest.mark.usefixtures("no_tasks_left")
async def test_incoming_flow_is_bounded(broker: tuple[str, int], shed: str) -> None:
    gate = asyncio.Event()
    delivered: list[DeviceMessage] = []

    async def slow_sink(msg: DeviceMessage) -> None:
        await gate.wait()
        delivered.append(msg)

    sent, bound = 50, 5
    bridge = MqttBridge(
        MqttSettings(broker[0], broker[1], client_id=f"ctl-{shed}", max_incoming=bound),
        MqttCodec(shed, range(1, 13)),
        RealClock(),
        slow_sink,
    )
    async with running(bridge), peer(broker) as p:
        for _ in range(sent):
            await p.publish(f"ebs/v1/{shed}/port/3/telemetry", telemetry_now(), qos=1)
        async with asyncio.timeout(3):
            # One message is in the sink, `bound` wait in the queue, the rest are discarded.
            while bridge.counters()["incoming_overflow"] < sent - bound - 1:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        gate.set()
        async with asyncio.timeout(3):
            while bridge.counters()["delivered"] + bridge.counters()["incoming_overflow"] < sent:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    assert bound <= len(delivered) <= bound + 1


# --------------------------------------------------------------------------- private broker


@pytest.mark.broker
@pytest.mark.usefixtures("no_tasks_left")
async def test_command_sent_while_broker_down_is_delivered_after_restart() -> None:
    shed, sink = new_shed(), Collector()
    with PrivateMosquitto() as mosquitto:
        address = ("127.0.0.1", mosquitto.port)
        board_id = f"board-{shed}"
        # The board has a persistent session, so the broker keeps its commands while it is away.
        async with peer(address, identifier=board_id, clean_session=False) as b:
            await b.subscribe(f"ebs/v1/{shed}/port/+/cmd", qos=1)
        # A long ack timeout: the command must arrive once, without help from a retry.
        async with running(make_bridge(address, shed, sink, ack_timeout_s=5)) as bridge:
            await asyncio.to_thread(mosquitto.stop)
            await disconnected(bridge)
            bridge.send_command(on(cmd_id="c-outbox"))
            await asyncio.sleep(0.2)
            assert bridge.counters()["commands_sent"] == 0
            await asyncio.to_thread(mosquitto.start)
            async with asyncio.timeout(3):
                await bridge.wait_connected()
            async with peer(address, identifier=board_id, clean_session=False) as b:
                fake = FakeBoard(b, shed)
                task = asyncio.create_task(fake.run())
                try:
                    await sink.wait(lambda: bool(sink.of(CmdAck)))
                finally:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            counters = bridge.counters()
    assert [c["id"] for c in fake.commands] == ["c-outbox"]
    assert sink.of(CmdAck) == [CmdAck(3, "c-outbox", True, True)]
    assert counters["commands_sent"] == 1
    assert counters["reconnects"] == 1
