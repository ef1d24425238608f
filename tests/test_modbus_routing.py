"""RoutingBridge: one controller, a mixed shed of an MQTT bridge and Modbus buses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from firmware_bridge.messages import CmdAck, PortCommand
from firmware_bridge.modbus_routing import RoutingBridge
from tests.test_modbus_harness import T0, leak_check, running_shed


@pytest.fixture(autouse=True)
async def _no_leaks() -> AsyncIterator[None]:
    async with leak_check():
        yield


class FakeBridge:
    """Records what it is asked, like a bridge would carry it."""

    def __init__(self) -> None:
        self.commands: list[PortCommand] = []
        self.states: list[tuple[int, str]] = []
        self.running = False

    def send_command(self, cmd: PortCommand) -> None:
        self.commands.append(cmd)

    def publish_port_state(
        self, port: int, state: str, session: str | None, w: float, session_wh: int, since: int
    ) -> None:
        self.states.append((port, state))

    def counters(self) -> dict[str, int]:
        return {"sent": len(self.commands)}

    def start(self) -> None:
        self.running = True

    async def stop(self) -> None:
        self.running = False


def test_routes_by_port_with_a_default() -> None:
    mqtt, bus_a, bus_b = FakeBridge(), FakeBridge(), FakeBridge()
    router = RoutingBridge()
    router.add("mqtt", mqtt)
    router.add("rs485-a", bus_a, [1, 2])
    router.add("rs485-b", bus_b, range(30, 33))
    router.send_command(PortCommand(2, "a", "off"))
    router.send_command(PortCommand(31, "b", "off"))
    router.send_command(PortCommand(7, "c", "off"))
    router.publish_port_state(1, "idle", None, 0.0, 0, T0)
    router.publish_port_state(7, "idle", None, 0.0, 0, T0)
    assert [c.id for c in bus_a.commands] == ["a"]
    assert [c.id for c in bus_b.commands] == ["b"]
    assert [c.id for c in mqtt.commands] == ["c"]
    assert (bus_a.states, mqtt.states) == ([(1, "idle")], [(7, "idle")])
    assert router.counters() == {"mqtt.sent": 1, "rs485-a.sent": 1, "rs485-b.sent": 1}


def test_a_port_on_two_routes_or_no_route_is_an_error() -> None:
    router = RoutingBridge()
    router.add("a", FakeBridge(), [1, 2])
    with pytest.raises(ValueError, match="already routed"):
        router.add("b", FakeBridge(), [2, 3])
    with pytest.raises(ValueError, match="no bridge serves port 9"):
        router.send_command(PortCommand(9, "x", "off"))
    router.add("mqtt", FakeBridge())
    with pytest.raises(ValueError, match="default"):
        router.add("mqtt-2", FakeBridge())


async def test_starts_and_stops_its_members_and_carries_modbus_commands() -> None:
    mqtt = FakeBridge()
    async with running_shed({1: 12}, start=False) as shed:
        router = RoutingBridge()
        router.add("mqtt", mqtt)
        router.add("rs485", shed.bridge, shed.bridge.ports)
        async with router:
            assert mqtt.running
            router.send_command(PortCommand(3, "m1", "off"))
            router.send_command(PortCommand(40, "q1", "off"))
            await shed.until(lambda: shed.acks("m1"))
            counters = router.counters()
        assert not mqtt.running
    assert shed.acks("m1") == [CmdAck(3, "m1", True, False)]
    assert [c.id for c in mqtt.commands] == ["q1"]
    assert counters["rs485.commands_acked"] == 1
