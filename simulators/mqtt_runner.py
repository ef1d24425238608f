"""Puts simulated devices on a real MQTT broker: the only I/O of the simulators.

One MQTT connection per board (its last will is the retained
`{"online": false}` on its status topic, so a power cut shows as offline) and
one shared connection for the sensors. With per-device credentials (a broker
set up by `ebshed deploy broker`) every device logs in as itself, so each
sensor gets a connection of its own too; `credentials` maps login names to
passwords, and without it the runner takes the credentials file named by
`EBSHED_DEVICE_CREDENTIALS`, if that is set. `tls_context` connects over TLS.

Boards subscribe to their ports' `cmd` topics; each command is fed to
`SimBoard.handle` the moment it arrives, and whatever the model returns is
published with the contract's QoS and retain.

paho-mqtt 2.x is driven by the asyncio loop through its socket callbacks (the
same technique as aiomqtt), so there are no threads, and publishing is a
non-blocking enqueue: thousands of messages per second per process.

Two ways to drive time:
- `run(tick_s)`: ticks every device every `tick_s` simulated seconds using
  the clock's `sleep` (a `RealClock`, a `ScaledClock` for `--speed`, or a
  `SimClock` advanced by someone else);
- `step(now_ms)`: ticks every device once and publishes, for a driver that
  runs at "max" speed; `drain()` then waits until the broker has everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from controller.clock import Clock
from controller.mqtt_logins import CredentialsError, login_name, read_credentials
from simulators.board import SimBoard
from simulators.sensors import BaySensor, EnvSensor
from simulators.wire import Device, Outgoing, check_id

log = logging.getLogger(__name__)

_BARRIER_ROOT = "ebs-sim"  # outside the contract's `ebs/v1/` tree on purpose
CREDENTIALS_ENV = "EBSHED_DEVICE_CREDENTIALS"


class RunnerError(Exception):
    """A simulator runner failure; `code` is stable and machine-readable."""

    code = "runner_error"


class BrokerUnavailable(RunnerError):
    code = "broker_unavailable"


class DrainTimeout(RunnerError):
    code = "drain_timeout"


class MissingLogin(RunnerError):
    code = "missing_login"


def credentials_from_environment() -> dict[str, str] | None:
    """The credentials file named by `EBSHED_DEVICE_CREDENTIALS`, or None if unset."""
    path = os.environ.get(CREDENTIALS_ENV)
    if not path:
        return None
    try:
        return read_credentials(Path(path))
    except CredentialsError as err:
        raise RunnerError(f"{CREDENTIALS_ENV}: {err.message}") from err


class _Link:
    """One MQTT connection: a paho client whose sockets the asyncio loop watches."""

    def __init__(
        self,
        runner: MqttDeviceRunner,
        client_id: str,
        *,
        will: Outgoing | None,
        subscriptions: list[str],
        on_message: Callable[[mqtt.MQTTMessage], None] | None,
        on_connected: Callable[[], None],
        login: tuple[str, str] | None = None,
    ) -> None:
        self.runner = runner
        self.client_id = client_id
        self.login = login  # (username, password), or None: anonymous
        self.will = will
        self.subscriptions = subscriptions
        self.on_message = on_message
        self.on_connected = on_connected
        self.client: mqtt.Client | None = None
        self.connected = False
        self.wanted = False  # reconnect after an unexpected loss
        self.pending = 0  # publishes not yet confirmed (written for QoS 0, PUBACK for QoS 1)
        self.idle = asyncio.Event()
        self.idle.set()
        self._loop = asyncio.get_running_loop()
        self._misc: asyncio.Task[None] | None = None
        self._connack: asyncio.Future[None] | None = None
        self._suback: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._barrier_mid: int | None = None
        self._barrier: asyncio.Future[None] | None = None

    # ------------------------------------------------------------ connection

    async def open(self) -> None:
        runner = self.runner
        if self.client is not None:
            self._forget(self.client)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        client.max_inflight_messages_set(runner.max_inflight)
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        if self.will is not None:
            w = self.will
            client.will_set(w.topic, w.payload, w.qos, w.retain)
        if self.login is not None:
            client.username_pw_set(*self.login)
        if runner.tls_context is not None:
            client.tls_set_context(runner.tls_context)
        self._connack = self._loop.create_future()
        self._closed = self._loop.create_future()
        self.client = client
        self.wanted = True
        try:
            client.connect(runner.host, runner.port, keepalive=runner.keepalive_s)
            await asyncio.wait_for(self._connack, runner.connect_timeout_s)
            if self.subscriptions:
                self._suback = self._loop.create_future()
                client.subscribe([(t, 1) for t in self.subscriptions])
                await asyncio.wait_for(self._suback, runner.connect_timeout_s)
        except (OSError, TimeoutError, RunnerError) as err:
            self.wanted = False
            self._forget(client)
            raise BrokerUnavailable(
                f"{self.client_id}: cannot connect to {runner.host}:{runner.port}: {err!r}"
            ) from err
        except BaseException:
            self.wanted = False
            self._forget(client)
            raise
        self.connected = True
        self.on_connected()

    async def close(self) -> None:
        """Graceful: DISCONNECT (no will)."""
        self.wanted = False
        client = self.client
        if client is None:
            return
        if self.connected:
            client.disconnect()
            await self._wait_closed()
        self._forget(client)

    async def cut(self) -> None:
        """Ungraceful: drop the TCP connection without DISCONNECT, so the will fires."""
        self.wanted = False
        client = self.client
        if client is None:
            return
        sock = client.socket()
        if self.connected and isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            await self._wait_closed()
        self._forget(client)

    async def _wait_closed(self) -> None:
        if self._closed is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._closed), 5.0)

    def _forget(self, client: mqtt.Client) -> None:
        sock = client.socket()
        if sock is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(sock)
                self._loop.remove_writer(sock)
        client.on_socket_open = None
        client.on_socket_close = None
        client.on_socket_register_write = None
        client.on_socket_unregister_write = None
        client.on_disconnect = None
        # paho keeps a socket pair per connection until it is garbage collected;
        # close it (and any socket left) now. Private, but stable across paho 2.x.
        reset = getattr(client, "_reset_sockets", None)
        if callable(reset):
            reset()
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None
        self._lost()
        if self.client is client:
            self.client = None

    def _lost(self) -> None:
        self.connected = False
        self.pending = 0
        self.idle.set()
        if self._barrier is not None and not self._barrier.done():
            self._barrier.set_result(None)

    # ------------------------------------------------------------ publishing

    def publish(self, message: Outgoing) -> bool:
        client = self.client
        if client is None or not self.connected:
            return False
        info = client.publish(message.topic, message.payload, message.qos, message.retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        self.pending += 1
        self.idle.clear()
        return True

    async def barrier(self, timeout_s: float) -> None:
        """Wait until the broker has processed everything sent before (one QoS 1 round trip)."""
        client = self.client
        if client is None or not self.connected:
            return
        await asyncio.wait_for(self.idle.wait(), timeout_s)
        if self._barrier is not None and not self._barrier.done():
            await asyncio.wait_for(asyncio.shield(self._barrier), timeout_s)
            return
        self._barrier = self._loop.create_future()
        info = client.publish(f"{_BARRIER_ROOT}/{self.client_id}/barrier", b"", 1, False)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return
        self._barrier_mid = info.mid
        await asyncio.wait_for(self._barrier, timeout_s)

    # ------------------------------------------------------------ paho callbacks

    def _on_socket_open(self, client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        # Small MQTT packets must not wait for Nagle's algorithm (up to 40 ms each).
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._loop.add_reader(sock, self._read, client, sock)
        self._misc = self.runner.spawn(self._misc_loop(client))

    @staticmethod
    def _read(client: mqtt.Client, sock: Any) -> None:
        client.loop_read()
        # TLS: bytes already decrypted wake no reader; read them now.
        pending = getattr(sock, "pending", None)
        while pending is not None and client.socket() is sock and pending() > 0:
            client.loop_read()

    def _on_socket_close(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(sock)
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    def _on_register_write(self, client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        self._loop.add_writer(sock, client.loop_write)

    def _on_unregister_write(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_writer(sock)

    async def _misc_loop(self, client: mqtt.Client) -> None:
        while True:  # keepalive pings; paho returns an error once the socket is gone
            if client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            await asyncio.sleep(1.0)

    def _on_connect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        fut = self._connack
        if fut is None or fut.done():
            return
        if reason.is_failure:
            fut.set_exception(BrokerUnavailable(f"{self.client_id}: broker refused: {reason}"))
        else:
            fut.set_result(None)

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, _mid: int, _codes: Any, _props: Any
    ) -> None:
        if self._suback is not None and not self._suback.done():
            self._suback.set_result(None)

    def _on_publish(
        self, _client: mqtt.Client, _userdata: Any, mid: int, _reason: Any, _props: Any
    ) -> None:
        if mid == self._barrier_mid and self._barrier is not None:
            self._barrier_mid = None
            if not self._barrier.done():
                self._barrier.set_result(None)
            return
        if self.pending > 0:
            self.pending -= 1
            if self.pending == 0:
                self.idle.set()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self.on_message is None:
            return
        try:
            self.on_message(message)
        except Exception:  # a model bug must not kill the connection
            self.runner.errors += 1
            log.exception("%s: handling %s failed", self.client_id, message.topic)

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        was_connected = self.connected
        self._lost()
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(BrokerUnavailable(f"{self.client_id}: {reason}"))
        if self.wanted and was_connected:
            log.warning("%s: connection lost (%s); reconnecting", self.client_id, reason)
            self.runner.spawn(self._reconnect())

    async def _reconnect(self) -> None:
        delay = self.runner.reconnect_delay_s
        old = self.client
        if old is not None:
            self._forget(old)
        self.wanted = True
        while self.wanted:
            await asyncio.sleep(delay)
            if not self.wanted:
                return
            try:
                await self.open()
            except BrokerUnavailable as err:
                log.info("%s: still no broker: %s", self.client_id, err)
                delay = min(delay * 2.0, 10.0)
                self.wanted = True
            else:
                return


class MqttDeviceRunner:
    """Connects a shed's simulated boards and sensors to an MQTT broker."""

    def __init__(
        self,
        host: str,
        port: int,
        shed: str,
        devices: Iterable[Device],
        clock: Clock,
        *,
        keepalive_s: int = 60,
        connect_timeout_s: float = 5.0,
        reconnect_delay_s: float = 0.5,
        max_inflight: int = 1000,
        max_pending: int = 20_000,
        client_id_prefix: str = "ebs-sim",
        announce_offline_on_close: bool = True,
        credentials: Mapping[str, str] | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.shed = check_id("shed", shed)
        self.clock = clock
        self.keepalive_s = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.reconnect_delay_s = reconnect_delay_s
        self.max_inflight = max_inflight
        self.max_pending = max_pending
        self.client_id_prefix = client_id_prefix
        self.announce_offline_on_close = announce_offline_on_close
        self.credentials = (
            dict(credentials) if credentials is not None else credentials_from_environment()
        )
        self.tls_context = tls_context
        self.boards: dict[str, SimBoard] = {}
        self.sensors: list[Device] = []
        for device in devices:
            if device.shed != shed:
                raise ValueError(f"device of shed {device.shed!r} given to runner of {shed!r}")
            if isinstance(device, SimBoard):
                if device.board_id in self.boards:
                    raise ValueError(f"two boards with id {device.board_id!r}")
                self.boards[device.board_id] = device
            else:
                self.sensors.append(device)
        self.published = 0  # device messages handed to paho (not the drain barriers)
        self.publish_failures = 0  # dropped because a connection was down
        self.commands_handled = 0
        self.errors = 0
        self._links: dict[str, _Link] = {}
        self._sensor_links: dict[int, _Link] = {}  # id(sensor) -> its link (maybe shared)
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> MqttDeviceRunner:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect every board (will set, cmd topics subscribed, status published)."""
        if self._started:
            return
        self._started = True
        try:
            for board in self.boards.values():
                self._links[board.board_id] = self._board_link(board)
            self._sensor_links = self._make_sensor_links()
        except MissingLogin:
            self._started = False
            raise
        links = self._all_links()
        results = await asyncio.gather(
            *(link.open() for link in links if self._powered(link)), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.close()
            raise errors[0]

    def _login(self, username: str) -> tuple[str, str] | None:
        if self.credentials is None:
            return None
        password = self.credentials.get(username)
        if password is None:
            raise MissingLogin(f"no password for MQTT login {username} in the credentials")
        return username, password

    def _make_sensor_links(self) -> dict[int, _Link]:
        def link(suffix: str, login: tuple[str, str] | None) -> _Link:
            return _Link(self, f"{self.client_id_prefix}-{self.shed}-{suffix}", will=None,
                         subscriptions=[], on_message=None, on_connected=lambda: None,
                         login=login)  # fmt: skip

        if not self.sensors:
            return {}
        if self.credentials is None:  # anonymous: one connection for every sensor
            shared = link("sensors", None)
            return {id(sensor): shared for sensor in self.sensors}
        links = {}
        for sensor in self.sensors:
            if isinstance(sensor, BaySensor):
                suffix, username = f"bay-{sensor.bay}", login_name(self.shed, "bay", sensor.bay)
            elif isinstance(sensor, EnvSensor):
                suffix = f"env-{sensor.sensor_id}"
                username = login_name(self.shed, "env", sensor.sensor_id)
            else:
                raise MissingLogin(f"no MQTT login for a {type(sensor).__name__}")
            links[id(sensor)] = link(suffix, self._login(username))
        return links

    def _powered(self, link: _Link) -> bool:
        board = self._board_of(link)
        return board is None or board.powered

    def _board_of(self, link: _Link) -> SimBoard | None:
        for board_id, candidate in self._links.items():
            if candidate is link:
                return self.boards[board_id]
        return None

    def _board_link(self, board: SimBoard) -> _Link:
        def on_message(message: mqtt.MQTTMessage) -> None:
            self.commands_handled += 1
            outs = board.handle(message.topic, bytes(message.payload), self.clock.now_ms())
            self._publish_on(link, outs)

        def on_connected() -> None:
            self._publish_on(link, [board.status_message(True)])

        link = _Link(
            self,
            f"{self.client_id_prefix}-{self.shed}-{board.board_id}",
            will=board.last_will(),
            subscriptions=board.cmd_topics(),
            on_message=on_message,
            on_connected=on_connected,
            login=self._login(login_name(self.shed, "board", board.board_id)),
        )
        return link

    async def close(self) -> None:
        """Stop background tasks; disconnect (boards announce offline first if asked)."""
        for task in list(self._tasks):
            task.cancel()
        for link in self._links.values():
            link.wanted = False
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.announce_offline_on_close:
            for board_id, link in self._links.items():
                if link.connected:
                    self._publish_on(link, [self.boards[board_id].last_will()])
        with contextlib.suppress(RunnerError):
            await self.drain(timeout_s=5.0)
        await asyncio.gather(*(link.close() for link in self._all_links()), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._started = False

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a background task that `close()` cancels and waits for."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------ time

    async def step(self, now_ms: int) -> int:
        """Tick every device to `now_ms` and publish what they produce; return the count."""
        sent = 0
        for board_id, board in self.boards.items():
            outs = board.tick(now_ms)
            if outs:
                sent += self._publish_on(self._links.get(board_id), outs)
        for sensor in self.sensors:
            outs = sensor.tick(now_ms)
            if outs:
                sent += self._publish_on(self._sensor_links.get(id(sensor)), outs)
        if self.pending > self.max_pending:
            await self.drain(barrier=False)
        else:
            await asyncio.sleep(0)
        return sent

    async def run(self, tick_s: float = 1.0) -> None:
        """Tick every `tick_s` simulated seconds until cancelled (real-time mode)."""
        if tick_s <= 0:
            raise ValueError("tick_s must be positive")
        while True:
            await self.step(self.clock.now_ms())
            await self.clock.sleep(tick_s)

    # ------------------------------------------------------------ publishing

    @property
    def pending(self) -> int:
        """Publishes handed to paho that the broker has not confirmed yet."""
        return sum(link.pending for link in self._all_links())

    def connected(self, board_id: str) -> bool:
        link = self._links.get(board_id)
        return link is not None and link.connected

    def publish(self, device: Device, messages: Iterable[Outgoing]) -> int:
        """Publish what a device method returned (`plug`, `tap_card`, `set_smoke`, ...)."""
        if isinstance(device, SimBoard):
            return self._publish_on(self._links.get(device.board_id), messages)
        return self._publish_on(self._sensor_links.get(id(device)), messages)

    def _publish_on(self, link: _Link | None, messages: Iterable[Outgoing]) -> int:
        sent = 0
        for message in messages:
            if link is not None and link.publish(message):
                sent += 1
            else:
                self.publish_failures += 1
        self.published += sent
        return sent

    async def drain(self, timeout_s: float = 30.0, *, barrier: bool = True) -> None:
        """Wait until every publish so far is confirmed (QoS 1 acked, QoS 0 written).

        With `barrier`, also one QoS 1 round trip per connection, so the broker
        has read every QoS 0 message too (it handles a connection's packets in
        order). Disconnected links are skipped: what they had is lost.
        """
        links = [link for link in self._all_links() if link.connected]
        try:
            async with asyncio.timeout(timeout_s):
                for link in links:
                    await link.idle.wait()
                if barrier:
                    await asyncio.gather(*(link.barrier(timeout_s) for link in links))
        except TimeoutError as err:
            raise DrainTimeout(f"{self.pending} publishes unconfirmed after {timeout_s} s") from err

    def _all_links(self) -> list[_Link]:
        links = list(self._links.values())
        for link in self._sensor_links.values():
            if link not in links:
                links.append(link)
        return links

    # ------------------------------------------------------------ faults

    async def reboot_board(self, board_id: str, *, drop_connection: bool = False) -> None:
        """Firmware restart (seq 0, relays off). With `drop_connection` the TCP
        connection dies too (the will fires), then the board reconnects."""
        board = self.boards[board_id]
        link = self._links[board_id]
        if not board.powered:
            return
        outs = board.reboot(self.clock.now_ms())
        if not drop_connection:
            self._publish_on(link, outs)
            return
        await link.cut()
        await link.open()  # publishes the status
        self._publish_on(link, [o for o in outs if o.topic != board.status_topic])

    async def power_cut(self, board_id: str) -> None:
        """The board loses mains: relays drop, the connection dies ungracefully."""
        board = self.boards[board_id]
        link = self._links[board_id]
        self._publish_on(link, board.power_cut(self.clock.now_ms()))
        await link.cut()

    async def power_restore(self, board_id: str) -> None:
        """Mains back: the board boots, reconnects and publishes its status."""
        board = self.boards[board_id]
        link = self._links[board_id]
        if board.powered and link.connected:
            return
        outs = board.power_restore(self.clock.now_ms())
        await link.open()
        self._publish_on(link, [o for o in outs if o.topic != board.status_topic])
