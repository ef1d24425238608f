"""Per-device broker logins against a real Mosquitto with the files `ebshed deploy broker` writes.

A private Mosquitto (a free port, the generated password file, ACL and
include, certificates from deploy/make-certs.sh) serves two sheds. Each probe
publishes as a device what that device must not publish, then something it
may publish; the controllers' subscribers must receive the second and none
of the first. The probes' counts are printed (`pytest -s`) for docs/security.md.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from controller.clock import SimClock
from controller.deploy_broker import BrokerOptions, deploy_broker
from controller.mqtt_logins import read_credentials
from controller.runtime import running_controller
from controller.settings import load_settings, settings_from_dict
from simulators.board import SimBoard
from simulators.mqtt_runner import MissingLogin, MqttDeviceRunner, RunnerError
from simulators.sensors import BaySensor, EnvSensor
from tests.brokers import PrivateMosquitto, free_port

pytest_plugins = ["tests.leaks"]
pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_795_341_000_000
N = 5  # attempts per probe

SHED_A = {
    "shed": {"id": "acl-a"},
    "boards": [{"id": "b1", "ports": [1, 2]}, {"id": "b2", "ports": [3, 4]}],
    "bays": {"1": 1, "2": None},
    "sensors": [{"id": "smoke-1", "kind": "smoke"}],
}
SHED_B = {
    "shed": {"id": "acl-b"},
    "boards": [{"id": "b1", "ports": [1]}],
    "sensors": [{"id": "smoke-1"}],
}


@dataclass
class Broker:
    host: str
    port: int  # plain, 127.0.0.1
    tls_port: int
    out: Path
    passwords: dict[str, str]

    @property
    def ca(self) -> Path:
        return self.out / "certs" / "ca.crt"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the broker's certificates")
    out = tmp_path_factory.mktemp("broker")
    plain, tls = free_port(), free_port()
    configs = [settings_from_dict(SHED_A), settings_from_dict(SHED_B)]
    options = BrokerOptions(broker_dir=out, plain_port=plain, tls_port=tls, tls_bind="127.0.0.1")
    deploy_broker(configs, out, options)
    subprocess.run(
        [str(ROOT / "deploy" / "make-certs.sh"), "-o", str(out / "certs"),
         "-n", "localhost", "-i", "127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    with PrivateMosquitto(include_dir=out, port=plain):
        yield Broker("127.0.0.1", plain, tls, out, read_credentials(out / "credentials.toml"))


def client(broker: Broker, username: str | None, **kwargs: Any) -> aiomqtt.Client:
    password = broker.passwords.get(username or "")
    kwargs.setdefault("port", broker.port)
    return aiomqtt.Client(broker.host, username=username, password=password, **kwargs)


class Inbox:
    """Everything a subscriber receives, read by a background task."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.received: list[tuple[str, bytes]] = []
        self._task = asyncio.create_task(self._read())
        self._changed = asyncio.Event()

    async def _read(self) -> None:
        async for message in self.client.messages:
            assert isinstance(message.payload, bytes)
            self.received.append((message.topic.value, message.payload))
            self._changed.set()

    async def wait_for(
        self, match: Callable[[str, bytes], bool], count: int = 1, timeout_s: float = 5.0
    ) -> None:
        async with asyncio.timeout(timeout_s):
            while self.count(match) < count:
                self._changed.clear()
                await self._changed.wait()

    def count(self, match: Callable[[str, bytes], bool]) -> int:
        return sum(1 for t, p in self.received if match(t, p))

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@asynccontextmanager
async def subscriber(broker: Broker, username: str, *filters: str) -> AsyncIterator[Inbox]:
    async with client(broker, username) as c:
        for f in filters:
            await c.subscribe(f, qos=1)
        inbox = Inbox(c)
        try:
            yield inbox
        finally:
            await inbox.close()


def on(topic: str, payload: bytes | None = None) -> Callable[[str, bytes], bool]:
    return lambda t, p: t == topic and (payload is None or p == payload)


def under(prefix: str) -> Callable[[str, bytes], bool]:
    return lambda t, _p: t.startswith(prefix)


def msg(**fields: Any) -> bytes:
    return json.dumps({"ts": T0, **fields}).encode()


SMOKE = msg(kind="smoke", value=1.0, alarm=True)
TELEMETRY = msg(seq=1, v=230.0, a=1.0, w=230.0, wh=100, relay=True)
OFFLINE = b'{"online": false}'

# What board b1 of shed acl-a must not publish: (what, topic, payload).
FORGED = [
    ("b2's status", "ebs/v1/acl-a/board/b2/status", OFFLINE),
    ("b2's socket 3 telemetry", "ebs/v1/acl-a/port/3/telemetry", TELEMETRY),
    ("b2's socket 4 event", "ebs/v1/acl-a/port/4/event", msg(type="overtemp")),
    ("b2's socket 3 ack", "ebs/v1/acl-a/port/3/cmd/ack", b'{"id":"x","ok":true,"relay":true}'),
    ("a smoke alarm", "ebs/v1/acl-a/env/smoke-1", SMOKE),
    ("a bay's occupancy", "ebs/v1/acl-a/bay/1/occupancy", msg(occupied=True)),
    ("a command to its own socket", "ebs/v1/acl-a/port/1/cmd", b'{"id":"x","op":"on"}'),
    ("the controller's status", "ebs/v1/acl-a/controller/status", OFFLINE),
    ("a socket state", "ebs/v1/acl-a/port/1/state", b'{"state":"idle"}'),
    ("shed acl-b's board status", "ebs/v1/acl-b/board/b1/status", OFFLINE),
    ("shed acl-b's telemetry", "ebs/v1/acl-b/port/1/telemetry", TELEMETRY),
    ("shed acl-b's smoke alarm", "ebs/v1/acl-b/env/smoke-1", SMOKE),
]
OWN = [
    ("its own status", "ebs/v1/acl-a/board/b1/status", b'{"online": true}'),
    ("its own telemetry", "ebs/v1/acl-a/port/1/telemetry", TELEMETRY),
    ("its own event", "ebs/v1/acl-a/port/2/event", msg(type="button", action="stop")),
    ("its own ack", "ebs/v1/acl-a/port/2/cmd/ack", b'{"id":"y","ok":true,"relay":false}'),
]


def retained(topic: str) -> bool:
    return topic.endswith(("/status", "/occupancy"))


async def test_a_board_publishes_only_its_own_topics(broker: Broker, no_leaks: None) -> None:
    async with (
        subscriber(broker, "acl-a.controller", "ebs/v1/acl-a/#") as ctrl_a,
        subscriber(broker, "acl-b.controller", "ebs/v1/acl-b/#") as ctrl_b,
        client(broker, "acl-a.board.b1") as b1,
        client(broker, "acl-b.board.b1") as other,
    ):
        for i in range(N):
            for _what, topic, payload in FORGED:
                await b1.publish(topic, payload + b" " * i, qos=1, retain=retained(topic))
        for i in range(N):
            for _what, topic, payload in OWN:
                await b1.publish(topic, payload + b" " * i, qos=1, retain=retained(topic))
        await b1.publish("ebs/v1/acl-a/port/1/event", b"end-a", qos=1)
        await other.publish("ebs/v1/acl-b/port/1/event", b"end-b", qos=1)
        await ctrl_a.wait_for(on("ebs/v1/acl-a/port/1/event", b"end-a"))
        await ctrl_b.wait_for(on("ebs/v1/acl-b/port/1/event", b"end-b"))
        report = []
        for what, topic, _payload in FORGED:
            inbox = ctrl_b if topic.startswith("ebs/v1/acl-b/") else ctrl_a
            got = inbox.count(on(topic)) - (topic == "ebs/v1/acl-b/port/1/event")
            report.append(f"board acl-a/b1 forged {what}: {N} sent, {got} delivered")
            assert got == 0, report[-1]
        for what, topic, _payload in OWN:
            got = ctrl_a.count(on(topic))
            report.append(f"board acl-a/b1 {what}: {N} sent, {got} delivered")
            assert got == N, report[-1]
        print("\n" + "\n".join(report))
    # Nothing forged was kept as a retained message either.
    async with subscriber(broker, "acl-a.controller", "ebs/v1/acl-a/#") as fresh:
        await fresh.wait_for(on("ebs/v1/acl-a/board/b1/status"))
        assert fresh.count(on("ebs/v1/acl-a/board/b2/status")) == 0
        assert fresh.count(on("ebs/v1/acl-a/controller/status")) == 0
        assert fresh.count(on("ebs/v1/acl-a/bay/1/occupancy")) == 0
    async with client(broker, "acl-a.board.b1") as b1:
        await b1.publish("ebs/v1/acl-a/board/b1/status", b"", qos=1, retain=True)


async def test_sensors_publish_only_their_own_topic(broker: Broker, no_leaks: None) -> None:
    forged = [
        ("acl-a.bay.1", "ebs/v1/acl-a/env/smoke-1", SMOKE),
        ("acl-a.bay.1", "ebs/v1/acl-a/bay/2/occupancy", msg(occupied=True)),
        ("acl-a.env.smoke-1", "ebs/v1/acl-a/board/b1/status", OFFLINE),
        ("acl-a.env.smoke-1", "ebs/v1/acl-b/env/smoke-1", SMOKE),
        ("acl-b.env.smoke-1", "ebs/v1/acl-a/env/smoke-1", SMOKE),
    ]
    own = [
        ("acl-a.bay.1", "ebs/v1/acl-a/bay/1/occupancy", msg(occupied=False)),
        ("acl-a.env.smoke-1", "ebs/v1/acl-a/env/smoke-1", msg(kind="smoke", value=0, alarm=False)),
    ]
    async with (
        subscriber(broker, "acl-a.controller", "ebs/v1/acl-a/#") as ctrl_a,
        subscriber(broker, "acl-b.controller", "ebs/v1/acl-b/#") as ctrl_b,
    ):
        for username, topic, payload in forged + own:
            async with client(broker, username) as sensor:
                for _ in range(N):
                    await sensor.publish(topic, payload, qos=1)
        async with client(broker, "acl-b.env.smoke-1") as end:
            await end.publish("ebs/v1/acl-b/env/smoke-1", b"end", qos=1)
        for _username, topic, payload in own:
            await ctrl_a.wait_for(on(topic, payload), N)
        await ctrl_b.wait_for(on("ebs/v1/acl-b/env/smoke-1", b"end"))
        for username, topic, payload in forged:
            inbox = ctrl_b if topic.startswith("ebs/v1/acl-b/") else ctrl_a
            assert inbox.count(on(topic, payload)) == 0, f"{username} published on {topic}"
        for _username, topic, payload in own:
            assert ctrl_a.count(on(topic, payload)) == N
        print(f"\nsensors: {len(forged) * N} forged messages, 0 delivered; "
              f"own: {len(own) * N} of {len(own) * N} delivered")  # fmt: skip


async def test_a_board_reads_only_its_own_commands(broker: Broker, no_leaks: None) -> None:
    async with (
        subscriber(broker, "acl-a.board.b1", "ebs/v1/acl-a/port/3/cmd", "ebs/v1/acl-a/port/1/cmd",
                   "ebs/v1/acl-a/#", "ebs/v1/acl-b/#", "#") as b1,
        subscriber(broker, "acl-a.bay.1", "ebs/v1/acl-a/#") as bay,
        client(broker, "acl-a.controller") as ctrl_a,
        client(broker, "acl-b.controller") as ctrl_b,
    ):  # fmt: skip
        for i in range(N):
            await ctrl_b.publish("ebs/v1/acl-b/port/1/cmd", b'{"id":"b%d","op":"on"}' % i, qos=1)
            await ctrl_a.publish("ebs/v1/acl-a/port/3/cmd", b'{"id":"x%d","op":"on"}' % i, qos=1)
            await ctrl_a.publish("ebs/v1/acl-a/port/3/state", b'{"state":"idle"}', qos=1)
        for i in range(N):
            await ctrl_a.publish("ebs/v1/acl-a/port/1/cmd", b'{"id":"o%d","op":"on"}' % i, qos=1)
        await b1.wait_for(on("ebs/v1/acl-a/port/1/cmd", b'{"id":"o%d","op":"on"}' % (N - 1)))
        foreign = len(b1.received) - b1.count(on("ebs/v1/acl-a/port/1/cmd"))
        print(f"\nboard acl-a/b1 subscribed to b2's commands, its shed's # and shed acl-b's #: "
              f"{3 * N} foreign messages published, {foreign} delivered; "
              f"own commands {b1.count(on('ebs/v1/acl-a/port/1/cmd'))} of {N}")  # fmt: skip
        assert foreign == 0, b1.received
        # Every command went out for b1, so every one would have reached the bay sensor.
        assert bay.received == []


async def test_wrong_or_missing_passwords_are_refused(broker: Broker, no_leaks: None) -> None:
    attempts = [
        ("acl-a.board.b1", "not-the-password"),
        ("acl-a.controller", broker.passwords["acl-a.board.b1"]),  # another login's password
        ("acl-a.board.b9", broker.passwords["acl-a.board.b1"]),  # no such login
        (None, None),  # anonymous
    ]
    refused = 0
    for username, password in attempts:
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(broker.host, broker.port, username=username,
                                      password=password, timeout=5):  # fmt: skip
                pass
        refused += 1
    print(f"\nwrong, borrowed, unknown and missing logins: {refused} of {len(attempts)} refused")


async def test_a_board_cannot_take_over_another_boards_connection(
    broker: Broker, no_leaks: None
) -> None:
    """A client id is the login, so b1 cannot kick b2 off to fire b2's offline will."""
    will = aiomqtt.Will("ebs/v1/acl-a/board/b2/status", OFFLINE, qos=1, retain=True)
    async with (
        subscriber(broker, "acl-a.controller", "ebs/v1/acl-a/board/+/status") as ctrl,
        client(broker, "acl-a.board.b2", identifier="acl-a.board.b2", will=will) as b2,
    ):
        async with client(broker, "acl-a.board.b1", identifier="acl-a.board.b2") as b1:
            await b1.publish("ebs/v1/acl-a/board/b1/status", b'{"online": true}', qos=1)
        await b2.publish("ebs/v1/acl-a/board/b2/status", b'{"online": true}', qos=1)
        await ctrl.wait_for(on("ebs/v1/acl-a/board/b2/status", b'{"online": true}'))
        assert ctrl.count(on("ebs/v1/acl-a/board/b2/status", OFFLINE)) == 0
    async with client(broker, "acl-a.board.b2") as b2:  # the will fired as b2 left: clear it
        await b2.publish("ebs/v1/acl-a/board/b2/status", b"", qos=1, retain=True)


async def test_simulated_devices_log_in_with_their_credentials(
    broker: Broker, no_leaks: None
) -> None:
    shed = "acl-a"
    clock = SimClock(T0)
    rng = random.Random(3)
    boards = [SimBoard(shed, "b1", (1, 2), rng=rng, start_ms=T0),
              SimBoard(shed, "b2", (3, 4), rng=rng, start_ms=T0)]  # fmt: skip
    bay = BaySensor(shed, 1, rng=rng, start_ms=T0)
    smoke = EnvSensor(shed, "smoke-1", "smoke", rng=rng, start_ms=T0)
    async with subscriber(broker, "acl-a.controller", "ebs/v1/acl-a/#") as ctrl:
        async with MqttDeviceRunner(broker.host, broker.port, shed, [*boards, bay, smoke], clock,
                                    credentials=broker.passwords) as runner:  # fmt: skip
            runner.publish(smoke, smoke.set_smoke(True, T0))
            runner.publish(bay, bay.set_occupied(True, T0))
            await runner.drain()
            for board in ("b1", "b2"):
                await ctrl.wait_for(on(f"ebs/v1/acl-a/board/{board}/status"))
            await ctrl.wait_for(on("ebs/v1/acl-a/env/smoke-1"))
            await ctrl.wait_for(on("ebs/v1/acl-a/bay/1/occupancy"))
            assert runner.publish_failures == 0
        unknown = EnvSensor(shed, "smoke-9", "smoke", rng=rng, start_ms=T0)
        runner = MqttDeviceRunner(broker.host, broker.port, shed, [unknown], clock,
                                  credentials=broker.passwords)  # fmt: skip
        with pytest.raises(MissingLogin, match=re.escape("acl-a.env.smoke-9")):
            await runner.start()
    async with client(broker, "acl-a.bay.1") as c:  # clear the retained occupancy
        await c.publish("ebs/v1/acl-a/bay/1/occupancy", b"", qos=1, retain=True)


def tls_context(broker: Broker) -> ssl.SSLContext:
    settings = settings_from_dict({**SHED_A, "mqtt": {"tls": True, "ca_file": str(broker.ca)}})
    context = settings.mqtt.tls_context()
    assert context is not None
    return context


async def test_tls_listener_with_the_made_certificates(broker: Broker, no_leaks: None) -> None:
    context = tls_context(broker)
    # The controller's own TLS settings connect (hostname checked against the certificate).
    for host in ("localhost", "127.0.0.1"):
        async with aiomqtt.Client(host, broker.tls_port, username="acl-a.controller",
                                  password=broker.passwords["acl-a.controller"],
                                  tls_context=context):  # fmt: skip
            pass
    # One connection per login: a second one with the same login would replace this one.
    async with subscriber(broker, "acl-a.controller", "ebs/v1/acl-a/#") as ctrl:
        # A simulated board over TLS reaches the controller on the plain listener.
        board = SimBoard("acl-a", "b1", (1, 2), rng=random.Random(1), start_ms=T0)
        async with MqttDeviceRunner("localhost", broker.tls_port, "acl-a", [board], SimClock(T0),
                                    credentials=broker.passwords, tls_context=context) as runner:
            runner.publish(board, board.tick(T0 + 60_000))
            await runner.drain()
            await ctrl.wait_for(on("ebs/v1/acl-a/port/1/telemetry"), 3)
            await ctrl.wait_for(on("ebs/v1/acl-a/board/b1/status"))
    # Without TLS, or trusting another CA, the TLS listener lets nobody in.
    with pytest.raises(aiomqtt.MqttError):
        async with client(broker, "acl-a.board.b1", port=broker.tls_port, timeout=3):
            pass
    with pytest.raises(aiomqtt.MqttError):
        async with client(broker, "acl-a.board.b1", port=broker.tls_port, timeout=3,
                          tls_context=ssl.create_default_context()):  # fmt: skip
            pass
    # A wrong password is refused over TLS too.
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("localhost", broker.tls_port, username="acl-a.board.b1",
                                  password="wrong-password", tls_context=context, timeout=3):
            pass


async def test_the_controller_logs_in_over_tls_with_its_password_from_a_credential(
    broker: Broker, tmp_path: Path
) -> None:
    """systemd's LoadCredential=mqtt_password:.../acl-a.mqtt_password, as the unit file has it."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    shutil.copy(broker.out / "acl-a.mqtt_password", credentials / "mqtt_password")
    config = tmp_path / "acl-a.toml"
    config.write_text(
        f'[shed]\nid = "acl-a"\ndata_dir = "{tmp_path}"\n'
        f'[mqtt]\nhost = "localhost"\nport = {broker.tls_port}\nusername = "acl-a.controller"\n'
        f'tls = true\nca_file = "{broker.ca}"\n'
        '[[boards]]\nid = "b1"\nports = [1, 2]\n[[boards]]\nid = "b2"\nports = [3, 4]\n',
        "utf-8",
    )
    settings = load_settings(config, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert settings.mqtt.password == broker.passwords["acl-a.controller"]
    clock = SimClock(T0)
    rng = random.Random(5)
    boards = [SimBoard("acl-a", "b1", (1, 2), rng=rng, start_ms=T0),
              SimBoard("acl-a", "b2", (3, 4), rng=rng, start_ms=T0)]  # fmt: skip
    async with (
        running_controller(settings, clock, central_loops=False) as service,
        MqttDeviceRunner(broker.host, broker.port, "acl-a", boards, clock,
                         credentials=broker.passwords, announce_offline_on_close=False),
    ):  # fmt: skip
        async with asyncio.timeout(10):
            while not all(service.core.board_online.values()):  # noqa: ASYNC110  # no event
                await asyncio.sleep(0.02)
    async with client(broker, "acl-a.board.b1") as b1, client(broker, "acl-a.board.b2") as b2:
        await b1.publish("ebs/v1/acl-a/board/b1/status", b"", qos=1, retain=True)
        await b2.publish("ebs/v1/acl-a/board/b2/status", b"", qos=1, retain=True)


async def test_a_rotated_password_is_refused_after_a_reload(tmp_path: Path, no_leaks: None) -> None:
    """docs/security.md: `--rotate LOGIN`, then reload Mosquitto (SIGHUP)."""
    config = [settings_from_dict(SHED_B)]
    options = BrokerOptions(broker_dir=tmp_path, plain_port=free_port(), tls_port=0)
    deploy_broker(config, tmp_path, options)
    old = read_credentials(tmp_path / "credentials.toml")
    with PrivateMosquitto(include_dir=tmp_path, port=options.plain_port) as mosquitto:
        broker = Broker("127.0.0.1", options.plain_port, 0, tmp_path, old)
        async with client(broker, "acl-b.board.b1"):
            pass
        deploy_broker(config, tmp_path, options, rotate=["acl-b.board.b1"])
        new = read_credentials(tmp_path / "credentials.toml")
        assert new["acl-b.board.b1"] != old["acl-b.board.b1"]
        mosquitto.reload()
        async with asyncio.timeout(5):
            while True:  # the reload happens on the broker's next turn
                try:
                    async with client(broker, "acl-b.board.b1", timeout=2):
                        pass
                except aiomqtt.MqttError:
                    break
                await asyncio.sleep(0.05)
        broker.passwords = new
        async with client(broker, "acl-b.board.b1"), client(broker, "acl-b.controller"):
            pass  # the new password works, and the other logins kept theirs


async def test_the_simulator_takes_its_logins_from_the_environment(
    broker: Broker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_leaks: None
) -> None:
    """`ebshed sim shed --credentials FILE` sets EBSHED_DEVICE_CREDENTIALS for the runner."""
    monkeypatch.setenv("EBSHED_DEVICE_CREDENTIALS", str(broker.out / "credentials.toml"))
    board = SimBoard("acl-b", "b1", (1,), rng=random.Random(2), start_ms=T0)
    async with (
        subscriber(broker, "acl-b.controller", "ebs/v1/acl-b/board/b1/status") as ctrl,
        MqttDeviceRunner(broker.host, broker.port, "acl-b", [board], SimClock(T0)),
    ):
        await ctrl.wait_for(lambda _t, p: bool(p) and json.loads(p)["online"] is True)
    async with client(broker, "acl-b.board.b1") as b1:
        await b1.publish("ebs/v1/acl-b/board/b1/status", b"", qos=1, retain=True)
    bad = tmp_path / "credentials.toml"
    bad.write_text("[logins\n")
    monkeypatch.setenv("EBSHED_DEVICE_CREDENTIALS", str(bad))
    with pytest.raises(RunnerError, match="EBSHED_DEVICE_CREDENTIALS"):
        MqttDeviceRunner(broker.host, broker.port, "acl-b", [board], SimClock(T0))
