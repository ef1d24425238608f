"""Real MQTT brokers for tests: the shared Mosquitto, a private one, and a TCP proxy.

No fixtures here: plain helpers that tests call. Without a broker a test is
skipped with the reason, except in CI (`CI=true`), where it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

DEFAULT_BROKER = "127.0.0.1:1883"
MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; a broker is required in CI")
    pytest.skip(reason)


def _reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def mqtt_broker_address() -> tuple[str, int]:
    """The shared test broker (EBSHED_TEST_MQTT=host:port, default 127.0.0.1:1883)."""
    spec = os.environ.get("EBSHED_TEST_MQTT", DEFAULT_BROKER)
    host, _, port_text = spec.rpartition(":")
    if not host or not port_text.isdigit():
        pytest.fail(f"EBSHED_TEST_MQTT must be host:port, got {spec!r}")
    port = int(port_text)
    if not _reachable(host, port):
        _unavailable(f"no MQTT broker at {host}:{port} (set EBSHED_TEST_MQTT=host:port)")
    return host, port


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_port(port: int, up: bool, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while _reachable("127.0.0.1", port, 0.2) != up:
        if time.monotonic() > deadline:
            raise TimeoutError(f"port {port} did not go {'up' if up else 'down'}")
        time.sleep(0.01)


def end_process(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Terminate a server the tests started; kill it if it does not end in time."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class PrivateMosquitto:
    """A Mosquitto of our own on a free port, with persistence, that a test can stop and restart.

    Stopping it (SIGTERM) saves sessions and queued QoS 1 messages; starting it
    again on the same port restores them, as a real broker restart does.
    """

    def __init__(self, include_dir: Path | None = None, port: int | None = None) -> None:
        """With `include_dir`, listeners and security come from the `*.conf` files there
        (as `ebshed deploy broker` writes them) and `port` is their plain listener."""
        binary = next((p for p in MOSQUITTO_PATHS if Path(p).exists()), shutil.which("mosquitto"))
        if binary is None:
            _unavailable("mosquitto binary not found")
        self.binary = str(binary)
        self.port = port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="ebshed-mosquitto-")
        self._conf = Path(self._dir.name) / "mosquitto.conf"
        listen = (
            f"include_dir {include_dir}\n"
            if include_dir is not None
            else f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
        )
        self._conf.write_text(
            listen
            + "persistence true\n"
            f"persistence_location {self._dir.name}/\n"
            "log_dest none\n"
            # Run as root, Mosquitto would switch to user "mosquitto" and lose the directory.
            f"user {getpass.getuser()}\n"
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self._conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port, up=True)

    def reload(self) -> None:
        """SIGHUP: Mosquitto reads its password file, ACL and certificates again."""
        assert self._proc is not None, "not running"
        self._proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        end_process(proc, 5)
        _wait_port(self.port, up=False)

    def __enter__(self) -> PrivateMosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._dir.cleanup()


class TcpProxy:
    """Forwards 127.0.0.1:`port` to a broker. `cut()` kills every connection without an
    MQTT DISCONNECT (the broker sees a dead client) and refuses new ones; `restore()`
    listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        pumps = (
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        )
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for w in (writer, up_writer):
            w.close()
            self._writers.discard(w)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def cut(self) -> None:
        """Stop listening and drop every forwarded connection at once."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            transport = w.transport
            if isinstance(transport, asyncio.Transport):
                transport.abort()
        self._writers.clear()
        await self._drain_tasks()

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()

    async def _drain_tasks(self) -> None:
        tasks, self._tasks = self._tasks, set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
