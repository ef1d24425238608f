"""One bridge in front of several: a mixed shed of MQTT boards and Modbus buses.

`RoutingBridge` is what `ControllerService.bridge` needs (`send_command`,
`publish_port_state`) and routes each call by port: ports of a Modbus bus to
that bus's `ModbusBridge`, every other port to the default bridge (the
`MqttBridge`, which serves any port of the shed). It also starts and stops
its members together and merges their counters, prefixed with each member's
name. The controller still does not know which transport a port uses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from types import TracebackType
from typing import Protocol

from firmware_bridge.messages import PortCommand

log = logging.getLogger(__name__)


class PortBridge(Protocol):
    def send_command(self, cmd: PortCommand) -> None: ...

    def publish_port_state(
        self, port: int, state: str, session: str | None, w: float, session_wh: int, since: int
    ) -> None: ...

    def counters(self) -> dict[str, int]: ...

    def start(self) -> None: ...

    async def stop(self) -> None: ...


class RoutingBridge:
    """Routes by port. `add(name, bridge, ports)`; `ports=None` makes it the default route."""

    def __init__(self) -> None:
        self._members: dict[str, PortBridge] = {}
        self._routes: dict[int, PortBridge] = {}
        self._default: PortBridge | None = None
        self._started: list[PortBridge] = []

    def add(self, name: str, bridge: PortBridge, ports: Iterable[int] | None = None) -> None:
        if name in self._members:
            raise ValueError(f"a bridge named {name!r} is already routed")
        if ports is None:
            if self._default is not None:
                raise ValueError("there is already a default bridge")
            self._default = bridge
        else:
            wanted = tuple(ports)
            taken = sorted(p for p in wanted if p in self._routes)
            if taken:
                raise ValueError(f"port(s) {taken} are already routed")
            self._routes.update(dict.fromkeys(wanted, bridge))
        self._members[name] = bridge

    @property
    def connected(self) -> bool:
        """Whether the members that have a link (the MQTT bridge) are connected."""
        return all(bool(getattr(m, "connected", True)) for m in self._members.values())

    def members(self) -> list[PortBridge]:
        return list(self._members.values())

    def member(self, name: str) -> PortBridge:
        """The bridge added under `name` (KeyError if none)."""
        return self._members[name]

    def route(self, port: int) -> PortBridge:
        bridge = self._routes.get(port, self._default)
        if bridge is None:
            raise ValueError(f"no bridge serves port {port}")
        return bridge

    # ------------------------------------------------------------------ controller API

    def send_command(self, cmd: PortCommand) -> None:
        self.route(cmd.port).send_command(cmd)

    def publish_port_state(
        self, port: int, state: str, session: str | None, w: float, session_wh: int, since: int
    ) -> None:
        self.route(port).publish_port_state(port, state, session, w, session_wh, since)

    def counters(self) -> dict[str, int]:
        return {
            f"{name}.{key}": value
            for name, bridge in self._members.items()
            for key, value in bridge.counters().items()
        }

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start every member; if one fails, those started are left for `stop()`."""
        for bridge in self._members.values():
            bridge.start()
            self._started.append(bridge)

    async def stop(self) -> None:
        started, self._started = self._started, []
        results = await asyncio.gather(*(b.stop() for b in started), return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.error("a bridge failed while stopping", exc_info=result)

    async def __aenter__(self) -> RoutingBridge:
        try:
            self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
