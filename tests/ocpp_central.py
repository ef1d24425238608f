"""An OCPP 1.6J central system for the tests, and a shed to connect to it.

`CentralSystem` is the `ocpp` library's server side (`ocpp.v16.ChargePoint`
handlers) on a real websockets server on a free loopback port; it records
every message a charge point sends and answers as a central system would
(transaction ids from 100 up), with answers the test can set: Boot statuses,
idTag statuses, CALLERRORs for the next N messages of an action, basic auth.

`OcppShed` is a controller service on a real SQLite file with the OCPP link,
fed by a simulated board (commands acked, telemetry every step, meter
registers counting the energy of a load), in simulated time.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ocpp.exceptions import InternalError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from controller.clock import SimClock
from controller.ocpp.link import OcppLink
from controller.service import ControllerService
from controller.settings import Settings, settings_from_dict
from firmware_bridge.messages import BoardStatus, CmdAck, PortCommand, PortEvent, Telemetry

PASSWORD = "shed-secret-1"


class _CentralCP(ChargePoint):  # type: ignore[misc]
    def __init__(self, cp_id: str, ws: ServerConnection, central: CentralSystem) -> None:
        super().__init__(cp_id, ws, response_timeout=10)
        self.central = central

    def _got(self, action: str, payload: dict[str, Any]) -> None:
        self.central.messages.append((action, payload))
        self.central.times.append(self.central.clock.now_ms() if self.central.clock else 0)
        n = self.central.refuse.get(action, 0)
        if n > 0:
            self.central.refuse[action] = n - 1
            self.central.refused.append((action, payload))
            raise InternalError(description="central system busy")

    @on(Action.boot_notification)
    def on_boot(self, **kw: Any) -> call_result.BootNotification:
        self._got("BootNotification", kw)
        status, interval = self.central.boot.popleft() if self.central.boot else ("Accepted", 300)
        return call_result.BootNotification("2026-12-04T00:00:00Z", interval, status)

    @on(Action.heartbeat)
    def on_heartbeat(self, **kw: Any) -> call_result.Heartbeat:
        self._got("Heartbeat", kw)
        return call_result.Heartbeat("2026-12-04T00:00:00Z")

    @on(Action.status_notification)
    def on_status(self, **kw: Any) -> call_result.StatusNotification:
        self._got("StatusNotification", kw)
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, **kw: Any) -> call_result.Authorize:
        self._got("Authorize", kw)
        return call_result.Authorize({"status": self.central.tags.get(kw["id_tag"], "Accepted")})

    @on(Action.start_transaction)
    def on_start(self, **kw: Any) -> call_result.StartTransaction:
        self._got("StartTransaction", kw)
        tx = next(self.central.tx_ids)
        self.central.starts[tx] = kw
        status = self.central.tags.get(kw["id_tag"], "Accepted")
        return call_result.StartTransaction(tx, {"status": status})

    @on(Action.stop_transaction)
    def on_stop(self, **kw: Any) -> call_result.StopTransaction:
        self._got("StopTransaction", kw)
        self.central.stops.setdefault(kw["transaction_id"], []).append(kw)
        return call_result.StopTransaction({"status": "Accepted"})

    @on(Action.meter_values)
    def on_meter_values(self, **kw: Any) -> call_result.MeterValues:
        self._got("MeterValues", kw)
        return call_result.MeterValues()


class CentralSystem:
    def __init__(self, password: str | None = PASSWORD) -> None:
        self.password = password
        self.port = 0
        self.server: Server | None = None
        self.cp: _CentralCP | None = None
        self.paths: list[str] = []
        self.subprotocols: list[str | None] = []
        self.refused_logins = 0
        self.ended: list[str] = []
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.clock: SimClock | None = None  # when set, `times` has the simulated arrival times
        self.times: list[int] = []
        self.refused: list[tuple[str, dict[str, Any]]] = []
        self.boot: deque[tuple[str, int]] = deque()
        self.tags: dict[str, str] = {}
        self.refuse: dict[str, int] = {}
        self.tx_ids = itertools.count(100)
        self.starts: dict[int, dict[str, Any]] = {}
        self.stops: dict[int, list[dict[str, Any]]] = {}

    def _check(self, conn: ServerConnection, request: Request) -> Response | None:
        if self.password is None:
            return None
        cp_id = request.path.rsplit("/", 1)[-1]
        want = "Basic " + base64.b64encode(f"{cp_id}:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != want:
            self.refused_logins += 1
            return conn.respond(401, "unknown charge point or wrong password\n")
        return None

    async def _serve(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.paths.append(ws.request.path)
        self.subprotocols.append(ws.subprotocol)
        cp = _CentralCP(ws.request.path.rsplit("/", 1)[-1], ws, self)
        self.cp = cp
        try:
            await cp.start()
        except Exception as err:  # the charge point went away
            self.ended.append(repr(err))

    async def start(self) -> None:
        self.server = await serve(self._serve, "127.0.0.1", self.port,
                                  subprotocols=[Subprotocol("ocpp1.6")],
                                  process_request=self._check)  # fmt: skip
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Go offline: every connection is closed, no new one is accepted."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server, self.cp = None, None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    async def send(self, payload: Any) -> Any:
        """A call of the central system to the charge point; returns its answer."""
        assert self.cp is not None, "no charge point connected"
        return await self.cp.call(payload)

    def of(self, action: str) -> list[dict[str, Any]]:
        return [p for a, p in self.messages if a == action]

    def statuses(self, connector: int) -> list[str]:
        return [p["status"] for p in self.of("StatusNotification")
                if p["connector_id"] == connector]  # fmt: skip


# ---- the shed -------------------------------------------------------------

T0 = 1_795_341_000_000
PORTS = (1, 2, 3, 4)
CARD = "04A1B2C3"


def shed_settings(data_dir: Path, url: str, **ocpp: Any) -> Settings:
    return settings_from_dict({
        "shed": {"id": "ocpp-1", "data_dir": str(data_dir)},
        "boards": [{"id": "b1", "ports": list(PORTS)}],
        "cards": [{"uid": CARD, "balance_fen": 5000}, {"uid": "04FFEE01", "balance_fen": 5000}],
        "ocpp": {"url": url, "charge_point_id": "SHED-OCPP-1", "password": PASSWORD,
                 "heartbeat_s": 300, "meter_interval_s": 60, **ocpp},
    })  # fmt: skip


class Board:
    """A healthy board: acks every command; its relays feed the loads set per port."""

    def __init__(self, service: ControllerService, clock: SimClock, wh: dict[int, int]) -> None:
        self.service, self.clock = service, clock
        self.relay: dict[int, bool] = dict.fromkeys(PORTS, False)
        self.load_w: dict[int, float] = dict.fromkeys(PORTS, 0.0)
        self.wh: dict[int, float] = {p: float(v) for p, v in wh.items()}
        self.seq = itertools.count(1)
        self.sent: list[PortCommand] = []
        self.on_off: Callable[[int], None] | None = None

    def send_command(self, cmd: PortCommand) -> None:
        """Carried out when the controller's step is over, as over the broker."""
        self.sent.append(cmd)
        asyncio.get_running_loop().call_soon(self._carry_out, cmd)

    def _carry_out(self, cmd: PortCommand) -> None:
        self.relay[cmd.port] = cmd.op != "off"
        self.service.on_message(CmdAck(cmd.port, cmd.id, True, self.relay[cmd.port]))
        if cmd.op == "off":
            self.sample(cmd.port)

    def publish_port_state(self, *args: object) -> None:
        pass

    def w(self, port: int) -> float:
        return self.load_w[port] if self.relay[port] else 0.0

    def sample(self, port: int) -> None:
        self.service.on_message(Telemetry(
            port, self.clock.now_ms(), next(self.seq), 230.0, self.w(port) / 230, self.w(port),
            int(self.wh[port]) % (1 << 32), self.relay[port], 31.5))  # fmt: skip

    def online(self) -> None:
        self.service.on_message(BoardStatus("b1", True))
        for p in PORTS:
            self.sample(p)

    def step(self, seconds: float) -> None:
        for p in PORTS:
            self.wh[p] += self.w(p) * seconds / 3600
            self.sample(p)

    def event(self, port: int, kind: str, uid: str | None = None) -> None:
        self.service.on_message(PortEvent(port, self.clock.now_ms(), kind, uid))  # type: ignore[arg-type]


class OcppShed:
    """Controller service + OCPP link + board, in simulated time on real files."""

    def __init__(self, data_dir: Path, central: CentralSystem, clock: SimClock,
                 wh: dict[int, int] | None = None, **ocpp: Any) -> None:  # fmt: skip
        self.clock, self.central = clock, central
        self.settings = shed_settings(data_dir, central.url, **ocpp)
        ids = itertools.count(1)
        prefix = f"r{clock.now_ms()}-"
        self.service = ControllerService(self.settings, clock,
                                         new_id=lambda: f"{prefix}{next(ids)}")  # fmt: skip
        self.board = Board(self.service, clock, wh or {p: 10_000 * p for p in PORTS})
        self.service.bridge = self.board
        self.link = OcppLink(self.service, self.settings.ocpp, clock, response_timeout_s=5)  # type: ignore[arg-type]
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.link.run(), name="ocpp-link")

    async def close(self) -> None:
        """The controller stops (as at a restart): link cancelled, sessions persisted."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.service.shutdown()
        self.link.close()
        self.service.store.engine.dispose()

    async def run(self, seconds: float, step_s: float = 10.0) -> None:
        """Simulated time passes: the board reports, the service ticks, the link works."""
        for _ in range(max(1, round(seconds / step_s))):
            self.clock.advance(step_s)
            self.board.step(step_s)
            self.service.tick()
            await asyncio.sleep(0.002)

    async def settle(self, check: Callable[[], bool], real_s: float = 5.0) -> None:
        """Wait (real time, the clock stands still) until `check()` holds."""
        for _ in range(int(real_s / 0.005)):
            if check():
                return
            await asyncio.sleep(0.005)
        raise AssertionError("condition not reached")

    async def run_until(self, check: Callable[[], bool], max_s: float = 7200,
                        step_s: float = 10.0) -> float:  # fmt: skip
        """Run simulated time until `check()` holds; returns the simulated seconds."""
        waited = 0.0
        while not check():
            if waited >= max_s:
                raise AssertionError(f"condition not reached in {max_s} simulated s")
            await self.run(step_s, step_s)
            waited += step_s
        return waited

    def port_state(self, port: int) -> str:
        return self.service.core.ports[port].state.value


__all__ = ["CentralSystem", "OcppShed", "call"]
