"""MQTT adapter: carries one shed's device traffic over a broker (aiomqtt 2.x).

I/O only, no policy. `MqttBridge` keeps one connection up (reconnecting with
backoff), decodes every incoming message with `MqttCodec`, hands valid ones to
the sink and counts the rest, and publishes commands, port states and its own
status. Which relay to switch, and when, is the controller's business.

Incoming flow is bounded. paho reads the connection through a
`BufferedSocket`: one read from the kernel (16 KiB) serves every packet in it,
in one wake-up of the event loop. Telemetry, the hot path, is handled the
moment paho has read it when the sink is synchronous (the controller's is): no
queue and no task per sample; while the controller is busy the socket is not
read, so a flood is held back by TCP and the broker. Every other message
waits in aiomqtt's queue between the socket reader and our reader task, and
telemetry joins that queue while it holds anything, so a sample never
overtakes an event or an ack. The queue holds at most
`MqttSettings.max_incoming` messages. An `async` sink is awaited before the
next message is taken, so a slow sink fills the queue; once it is full, newer
messages are discarded and counted as `incoming_overflow` (logged at most once
a minute). MQTT cannot push back on a broker without stalling the keepalive,
so a bound with counted losses is the honest choice. What a loss costs: a
telemetry sample nothing (energy is a register difference), a `cmd/ack` a
re-send of the command with the same id, an event its delivery (boards act on
their own trips; `lease_expired` shows again in the next telemetry).

Commands are never lost silently. `send_command` puts the command in an
outbox and returns. While connected the sender publishes it at QoS 1; the
board's `cmd/ack` with the same id (and port) resolves it, and the sink gets
that ack. A second ack of a command already answered (a board acks every send
of a re-sent id) is counted as `duplicate_ack`; an ack whose id was never
pending (or answered long ago) as `unexpected_ack`; neither is delivered. An
unacked command is re-sent with the same id (boards dedupe) after
`ack_timeout_s`, and on every reconnect; after `max_attempts` sends, or
if it is still unsent `outbox_ttl_s` after `send_command`, the sink gets
`CmdAck(ok=False, relay=False, error="timeout" | "not_sent" | "outbox_full")`;
`relay` means nothing in such a result. These timeouts run on
`timeout_clock(clock)`: on a clock sped up for a demo they still last real
seconds, as they protect real hardware (`firmware_bridge.tasks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
import ssl
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from firmware_bridge.buffered_socket import BufferedSocket
from firmware_bridge.messages import CmdAck, DeviceMessage, PortCommand
from firmware_bridge.mqtt_codec import (
    Drop,
    DropCounters,
    MqttCodec,
    encode_command,
    encode_controller_status,
    encode_port_state,
)
from firmware_bridge.tasks import Clock, Sink, StartStop, cancel_and_wait, timeout_clock

log = logging.getLogger(__name__)
ANSWERED_KEPT = 1024  # ids of answered commands remembered, to tell a repeated ack


@dataclass(frozen=True, slots=True)
class MqttSettings:
    host: str
    port: int = 1883
    client_id: str | None = None  # None: the client library makes one up
    keepalive_s: int = 30
    username: str | None = None
    password: str | None = None
    tls_context: ssl.SSLContext | None = None  # None: plain MQTT
    version: str = "unknown"  # controller version, published in controller/status
    timeout_s: float = 10.0  # connect, subscribe and publish confirmations
    ack_timeout_s: float = 5.0
    max_attempts: int = 3
    outbox_ttl_s: float = 30.0
    max_outbox: int = 1000
    max_incoming: int = 1000
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    tick_s: float = 1.0  # the longest the sender sleeps with commands pending
    stop_grace_s: float = 5.0


# --------------------------------------------------------------------------- command tracking


@dataclass(slots=True)
class _Pending:
    cmd: PortCommand
    created_ms: int
    attempts: int = 0  # sends the broker confirmed
    deadline_ms: int | None = None  # ack due by; None while waiting in the outbox


class CommandTracker:
    """Pending commands: outbox, ack deadlines, retries, failures. Pure; `now_ms` passed in."""

    def __init__(
        self, *, ack_timeout_ms: int, max_attempts: int, outbox_ttl_ms: int, max_pending: int
    ) -> None:
        self._ack_timeout_ms = ack_timeout_ms
        self._max_attempts = max_attempts
        self._ttl_ms = outbox_ttl_ms
        self._max_pending = max_pending
        self._pending: dict[str, _Pending] = {}  # insertion order = send order
        self._failed: list[CmdAck] = []
        self._answered: OrderedDict[str, int] = OrderedDict()  # id -> port, the newest

    def __len__(self) -> int:
        return len(self._pending)

    def is_pending(self, cmd_id: str) -> bool:
        return cmd_id in self._pending

    def was_sent(self, cmd_id: str) -> bool:
        """True if the broker already confirmed an earlier send of this pending command."""
        p = self._pending.get(cmd_id)
        return p is not None and p.attempts > 0

    def add(self, cmd: PortCommand, now_ms: int) -> None:
        """Put `cmd` in the outbox. A full outbox turns it into an `outbox_full` failure."""
        if cmd.id in self._pending:
            raise ValueError(f"command id {cmd.id!r} is already pending")
        if len(self._pending) >= self._max_pending:
            self._failed.append(_failure(cmd, "outbox_full"))
            return
        self._pending[cmd.id] = _Pending(cmd, now_ms)

    def poll(self, now_ms: int) -> tuple[list[PortCommand], list[CmdAck]]:
        """Commands to send now (outbox and timed-out ones), and failures to report."""
        failed, self._failed = self._failed, []
        due: list[PortCommand] = []
        for cmd_id, p in list(self._pending.items()):
            if p.deadline_ms is not None:
                if now_ms < p.deadline_ms:
                    continue
                if p.attempts >= self._max_attempts:
                    del self._pending[cmd_id]
                    failed.append(_failure(p.cmd, "timeout"))
                    continue
                p.deadline_ms = None  # back to the outbox: send again, same id
            if now_ms - p.created_ms > self._ttl_ms:
                del self._pending[cmd_id]
                failed.append(_failure(p.cmd, "timeout" if p.attempts else "not_sent"))
                continue
            due.append(p.cmd)
        return due, failed

    def sent(self, cmd_id: str, now_ms: int) -> bool:
        """The broker confirmed a send; start the ack deadline. True if it was a re-send."""
        p = self._pending.get(cmd_id)
        if p is None:  # acked before the publish call returned
            return False
        p.attempts += 1
        p.deadline_ms = now_ms + self._ack_timeout_ms
        return p.attempts > 1

    def resolve(self, ack: CmdAck) -> bool:
        """True and forget the command if `ack` answers a pending one (same id and port)."""
        p = self._pending.get(ack.id)
        if p is None or p.cmd.port != ack.port:
            return False
        del self._pending[ack.id]
        self._answered[ack.id] = ack.port
        if len(self._answered) > ANSWERED_KEPT:
            self._answered.popitem(last=False)
        return True

    def answered(self, ack: CmdAck) -> bool:
        """True if `ack` repeats the answer to a command resolved lately (same id and port)."""
        return self._answered.get(ack.id) == ack.port

    def next_due_ms(self) -> int | None:
        """When `poll` next has something to do without a new command: the earliest
        ack deadline or outbox expiry; None when nothing is pending."""
        due = [p.deadline_ms if p.deadline_ms is not None else p.created_ms + self._ttl_ms
               for p in self._pending.values()]
        return min(due, default=None)

    def requeue_inflight(self) -> None:
        """After a reconnect: acks may have been lost with the connection, send again now."""
        for p in self._pending.values():
            p.deadline_ms = None


def _failure(cmd: PortCommand, error: str) -> CmdAck:
    return CmdAck(port=cmd.port, id=cmd.id, ok=False, relay=False, error=error)


# --------------------------------------------------------------------------- the bridge


def _bounded_queue(
    on_full: Callable[[aiomqtt.Message], None],
    on_created: Callable[[asyncio.Queue[aiomqtt.Message]], None],
    direct: Callable[[aiomqtt.Message], bool],
    on_queued: Callable[[], None],
) -> type[asyncio.Queue[aiomqtt.Message]]:
    """aiomqtt's incoming queue type: at the bound, count and discard (aiomqtt would log
    each). The bridge is told of each queue made, to drain it without a task per message."""

    class BoundedQueue(asyncio.Queue[aiomqtt.Message]):
        def __init__(self, maxsize: int = 0) -> None:
            super().__init__(maxsize)
            on_created(self)

        def put_nowait(self, item: aiomqtt.Message) -> None:
            if direct(item):  # handled at once, never queued
                return
            if self.full():
                on_full(item)
                return
            super().put_nowait(item)
            on_queued()

    return BoundedQueue


def _buffer_reads(client: aiomqtt.Client) -> bool:
    """Have paho read the connection through a `BufferedSocket` (see that module).

    Neither aiomqtt nor paho has a public hook for the socket, so this wraps
    paho's socket factory, found through aiomqtt's `_client` (both libraries are
    pinned below their next major version; `tests/test_mqtt_adapter.py` checks
    that it still applies). Returns False, and the bridge reads as before, if
    they no longer look the same.
    """
    paho: Any = getattr(client, "_client", None)
    create = getattr(paho, "_create_socket", None)
    if create is None:
        log.warning("paho's socket factory not found: MQTT reads are not buffered")
        return False

    def create_buffered() -> Any:
        sock = create()
        # A plain TCP socket only: TLS (an SSLSocket) and proxy sockets are left as they are.
        return BufferedSocket(sock) if type(sock) is socket.socket else sock

    paho._create_socket = create_buffered
    return True


class MqttBridge(StartStop):
    """One shed's MQTT connection. Use `async with bridge:` or `start()` / `await stop()`."""

    def __init__(self, settings: MqttSettings, codec: MqttCodec, clock: Clock, sink: Sink) -> None:
        self._settings = settings
        self._codec = codec
        self._topics = codec.topics
        self._clock = clock  # timestamps: the controller's (maybe simulated) time
        self._timer = timeout_clock(clock)  # ack deadlines, re-sends, log rate limits
        self._sink = sink
        self._sync_sink = not inspect.iscoroutinefunction(sink)
        self._tracker = CommandTracker(
            ack_timeout_ms=round(settings.ack_timeout_s * 1000),
            max_attempts=settings.max_attempts,
            outbox_ttl_ms=round(settings.outbox_ttl_s * 1000),
            max_pending=settings.max_outbox,
        )
        self._drops = DropCounters()
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "received",
                "delivered",
                "unexpected_ack",
                "duplicate_ack",
                "incoming_overflow",
                "sink_errors",
                "commands_sent",
                "commands_acked",
                "commands_retried",
                "commands_failed",
                "connects",
                "reconnects",
            ),
            0,
        )
        self._states: dict[int, bytes] = {}  # newest state payload per port
        self._states_due: set[int] = set()
        self._status_due = False
        self._client: aiomqtt.Client | None = None  # set while connected and subscribed
        self._incoming: asyncio.Queue[aiomqtt.Message] | None = None
        self._queued = 0  # queued messages not handled yet (telemetry must not overtake)
        self._connected = asyncio.Event()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("bridge already started")
        self._task = asyncio.create_task(self.run(), name=f"mqtt-bridge-{self._topics.shed}")

    async def stop(self) -> None:
        """Publish `{"online": false}` (retained), disconnect, and end every task."""
        self._stop.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), self._settings.stop_grace_s)
        except TimeoutError:
            log.warning(
                "MQTT bridge did not stop within %.1f s, cancelling", self._settings.stop_grace_s
            )
            await cancel_and_wait(task)

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def wait_connected(self) -> None:
        """Wait until connected and subscribed (wrap in `asyncio.timeout` to bound it)."""
        await self._connected.wait()

    def counters(self) -> dict[str, int]:
        """Snapshot for metrics. `dropped.<reason>` per codec drop reason; `dropped` in total."""
        out = dict(self._counts)
        out["dropped"] = self._drops.total
        out.update({f"dropped.{reason}": n for reason, n in sorted(self._drops.by_reason.items())})
        out["pending_commands"] = len(self._tracker)
        return out

    # ------------------------------------------------------------------ outgoing

    def send_command(self, cmd: PortCommand) -> None:
        """Queue a relay command; returns at once. Its outcome reaches the sink as a `CmdAck`.

        Raises ValueError for a command the contract cannot carry or an id already pending.
        """
        encode_command(cmd)  # refuse a malformed command here, not in the sender
        self._tracker.add(cmd, self._timer.now_ms())
        self._wake.set()

    def publish_port_state(
        self, port: int, state: str, session: str | None, w: float, session_wh: int, since: int
    ) -> None:
        """Publish (retained, QoS 1) the controller's view of a port. Only the newest is kept."""
        self._states[port] = encode_port_state(state, session, w, session_wh, since)
        self._states_due.add(port)
        self._wake.set()

    def publish_controller_status(self) -> None:
        """Publish `{"online": true, "version", "ts"}` again (it is also sent on every connect)."""
        self._status_due = True
        self._wake.set()

    # ------------------------------------------------------------------ incoming

    async def handle_message(self, topic: str, payload: bytes) -> None:
        """Decode one message and deliver it, or count it. The reader calls this per message."""
        msg = self._accept(topic, payload)
        if msg is not None:
            await self._deliver(msg)

    def _direct(self, message: aiomqtt.Message) -> bool:
        """Telemetry, with a plain (not async) sink, is handled the moment paho reads it.

        It is the hot path: no queue and no task per sample. While the controller is
        busy the socket is not read, so a flood is held back by TCP and the broker
        (back-pressure), never by memory here. Everything else keeps the queue, and
        telemetry joins it while it holds anything, so nothing overtakes an event.
        """
        topic = message.topic.value
        if not self._sync_sink or not topic.endswith("/telemetry"):
            return False
        if self._queued:
            return False  # an earlier event or ack is not handled yet: keep the order
        msg = self._accept(topic, message.payload)
        if msg is not None:
            try:
                self._sink(msg)
            except Exception:
                self._counts["sink_errors"] += 1
                log.exception("sink failed on %s", type(msg).__name__)
            else:
                self._counts["delivered"] += 1
        return True

    def _accept(self, topic: str, payload: bytes) -> DeviceMessage | None:
        """Count, decode and check one message; None when it is dropped or not ours."""
        self._counts["received"] += 1
        msg = self._codec.decode(topic, payload, self._clock.now_ms())
        now = self._timer.now_ms()
        if isinstance(msg, Drop):
            if self._drops.record(msg, topic, now):
                log.warning("dropped MQTT message on %r: %s (%s)", topic, msg.reason, msg.detail)
            return None
        if isinstance(msg, CmdAck):
            if not self._tracker.resolve(msg):
                if self._tracker.answered(msg):
                    self._counts["duplicate_ack"] += 1
                    log.debug("duplicate cmd/ack on %r: id %r was answered", topic, msg.id)
                    return None
                self._counts["unexpected_ack"] += 1
                if self._drops.should_log(topic, now):
                    log.warning("unexpected cmd/ack on %r: id %r is not pending", topic, msg.id)
                return None
            self._counts["commands_acked"] += 1
        return msg

    async def _deliver(self, msg: DeviceMessage) -> None:
        try:
            result = self._sink(msg)
            if result is not None:
                await result
        except Exception:
            self._counts["sink_errors"] += 1
            log.exception("sink failed on %s", type(msg).__name__)
        else:
            self._counts["delivered"] += 1

    def _on_overflow(self, message: aiomqtt.Message) -> None:
        self._counts["incoming_overflow"] += 1
        if self._drops.should_log("(incoming queue full)", self._timer.now_ms()):
            log.warning(
                "incoming MQTT queue full (%d), discarding messages, e.g. on %r",
                self._settings.max_incoming,
                message.topic.value,
            )

    # ------------------------------------------------------------------ tasks

    async def run(self) -> None:
        """Connect, reconnect, read and send until `stop()`. `start()` runs this as a task."""
        client = self._make_client()
        sender = asyncio.create_task(self._send_loop(), name="mqtt-send")
        try:
            await self._connect_loop(client)
        finally:
            await cancel_and_wait(sender)

    def _make_client(self) -> aiomqtt.Client:
        s = self._settings
        client = aiomqtt.Client(
            s.host,
            s.port,
            identifier=s.client_id,
            username=s.username,
            password=s.password,
            tls_context=s.tls_context,
            keepalive=s.keepalive_s,
            timeout=s.timeout_s,
            will=aiomqtt.Will(
                self._topics.controller_status(),
                encode_controller_status(False),
                qos=1,
                retain=True,
            ),
            queue_type=_bounded_queue(
                self._on_overflow, self._set_incoming, self._direct, self._count_queued
            ),
            # Commands and acks are small packets: never hold them back for Nagle.
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
            max_queued_incoming_messages=s.max_incoming,
            logger=logging.getLogger(f"{__name__}.client"),
        )
        # Commands and states go out together (see _flush); a burst of them is normal.
        client.pending_calls_threshold = s.max_outbox
        _buffer_reads(client)
        return client

    async def _connect_loop(self, client: aiomqtt.Client) -> None:
        s = self._settings
        delay = s.reconnect_min_s
        while not self._stop.is_set():
            try:
                async with client:
                    delay = s.reconnect_min_s
                    await self._session(client)
            except aiomqtt.MqttError as err:
                log.warning("MQTT %s:%d: %s; retrying in %.1f s", s.host, s.port, err, delay)
            except Exception:  # a bug must not end the connection for good
                log.exception("MQTT session failed; retrying in %.1f s", delay)
            if self._stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, s.reconnect_max_s)

    async def _session(self, client: aiomqtt.Client) -> None:
        """One connection: say online, subscribe, read until it drops or we stop."""
        await self._publish_status(client, online=True)
        await client.subscribe(self._topics.subscriptions())
        self._status_due = False
        self._counts["reconnects" if self._counts["connects"] else "connects"] += 1
        self._tracker.requeue_inflight()
        self._states_due.update(self._states)  # the broker may have lost retained states
        self._client = client
        self._connected.set()
        self._wake.set()
        log.info("MQTT connected to %s:%d", self._settings.host, self._settings.port)
        reader = asyncio.create_task(self._read_loop(client), name="mqtt-read")
        stopping = asyncio.create_task(self._stop.wait(), name="mqtt-stop-wait")
        try:
            done, _ = await asyncio.wait({reader, stopping}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self._went_offline()
            await cancel_and_wait(reader, stopping)
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(1.0):  # cancelled: be brief
                    await self._publish_status(client, online=False)
            raise
        self._went_offline()
        await cancel_and_wait(reader, stopping)
        if reader in done:
            reader.result()  # raises the MqttError that ended the connection
            raise aiomqtt.MqttError("message stream ended")
        # A clean DISCONNECT does not fire the last will, so say it ourselves.
        with contextlib.suppress(aiomqtt.MqttError):
            await self._publish_status(client, online=False)

    def _went_offline(self) -> None:
        self._client = None
        self._connected.clear()

    def _set_incoming(self, queue: asyncio.Queue[aiomqtt.Message]) -> None:
        self._incoming = queue
        self._queued = 0

    def _count_queued(self) -> None:
        self._queued += 1

    async def _read_loop(self, client: aiomqtt.Client) -> None:
        # aiomqtt's iterator watches for a lost connection, but costs a task and a wait
        # per message; under load, what is already queued is taken straight from the queue.
        async for message in client.messages:
            await self._handle_queued(message)
            queue = self._incoming
            while queue is not None and not queue.empty():
                await self._handle_queued(queue.get_nowait())

    async def _handle_queued(self, message: aiomqtt.Message) -> None:
        try:
            await self.handle_message(message.topic.value, message.payload)
        finally:
            self._queued -= 1

    async def _send_loop(self) -> None:
        while True:
            self._wake.clear()
            due, failed = self._tracker.poll(self._timer.now_ms())
            for result in failed:
                self._counts["commands_failed"] += 1
                log.warning(
                    "command %s to port %d failed: %s", result.id, result.port, result.error
                )
                await self._deliver(result)
            client = self._client
            if client is not None:
                try:
                    await self._flush(client, due)
                except aiomqtt.MqttError as err:
                    # The reader sees the lost connection and reconnects; all is kept for then.
                    log.debug("MQTT publish failed: %s", err)
            await self._sleep_until_due()

    async def _sleep_until_due(self) -> None:
        """Until a new command, a reconnect or the next ack deadline (on the timeout
        clock: simulated when stepped, wall speed otherwise), whichever comes first;
        no wake-ups in between."""
        due = self._tracker.next_due_ms()
        # Status and states left over after a flush failed: retried within a tick while
        # connected; while disconnected the reconnect wakes the sender and sends them.
        retry_flush = self._client is not None and (self._status_due or bool(self._states_due))
        if due is None and not retry_flush:
            await self._wake.wait()
            return
        left_s = self._settings.tick_s if due is None else (due - self._timer.now_ms()) / 1000
        waits = {asyncio.ensure_future(self._wake.wait()),
                 asyncio.ensure_future(self._timer.sleep(min(max(left_s, 0.0),
                                                             self._settings.tick_s)))}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(*waits)

    async def _flush(self, client: aiomqtt.Client, due: list[PortCommand]) -> None:
        if self._status_due:
            self._status_due = False
            try:
                await self._publish_status(client, online=True)
            except aiomqtt.MqttError:
                self._status_due = True
                raise
        # Publishes go out together: each one waits for its PUBACK, so sending
        # them one after another would cost a broker round trip apiece.
        cmds = [cmd for cmd in due if self._tracker.is_pending(cmd.id)]
        resends = {cmd.id for cmd in cmds if self._tracker.was_sent(cmd.id)}
        if cmds:
            results = await asyncio.gather(
                *(client.publish(self._topics.command(c.port), encode_command(c), qos=1)
                  for c in cmds),
                return_exceptions=True,
            )
            for cmd, result in zip(cmds, results, strict=True):
                if isinstance(result, BaseException):
                    continue  # stays pending: re-sent after reconnect or its ack timeout
                self._counts["commands_sent"] += 1
                self._counts["commands_retried"] += cmd.id in resends
                self._tracker.sent(cmd.id, self._timer.now_ms())
            errors = [r for r in results if isinstance(r, aiomqtt.MqttError)]
            if errors:
                raise errors[0]
        if self._states_due:
            ports, self._states_due = list(self._states_due), set()
            results = await asyncio.gather(
                *(client.publish(self._topics.port_state(p), self._states[p], qos=1, retain=True)
                  for p in ports),
                return_exceptions=True,
            )
            failed = [
                p for p, r in zip(ports, results, strict=True) if isinstance(r, BaseException)
            ]
            if failed:
                self._states_due.update(failed)
                raise next(r for r in results if isinstance(r, aiomqtt.MqttError))

    async def _publish_status(self, client: aiomqtt.Client, *, online: bool) -> None:
        payload = (
            encode_controller_status(True, self._settings.version, self._clock.now_ms())
            if online
            else encode_controller_status(False)
        )
        await client.publish(self._topics.controller_status(), payload, qos=1, retain=True)
