"""`ebshed demo`: a whole simulated shed in one process.

An embedded MQTT broker (amqtt) on a free port, the real controller (the same
code as `ebshed controller run`) with SQLite, simulated boards, e-bikes, bay
and smoke sensors speaking the MQTT contract, and the central API with the
payment provider simulator over real HTTP (`simulators/central.py`).
Residents arrive through the day, plug in, tap a card or scan the socket's QR
code and pay (until full, or an amount), sometimes stop from the phone, and
leave; unused money goes back to the payment. Someone paying from a real
browser gets a simulated bike plugged into the socket they paid for.

At `--speed max` the driver advances a `SimClock` in steps and waits, after
each step, until every message sent has been received and handled on both
sides (a barrier), so a 24-hour day runs in about a minute and the result is
reproducible for a seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import datetime as dt
import getpass
import logging
import math
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from controller.clock import Clock, SimClock
from controller.core.config import RuleConfig
from controller.core.fsm import SocketState
from controller.core.metering import register_delta
from controller.core.model import (
    Action,
    Session,
    SessionClosed,
    SessionOpened,
)
from controller.runtime import running_controller
from controller.service import ControllerService
from controller.settings import CentralSettings, Settings, settings_from_dict
from firmware_bridge.modbus_bridge import ModbusBridge
from firmware_bridge.modbus_routing import RoutingBridge
from firmware_bridge.mqtt_adapter import MqttBridge
from simulators import ebike
from simulators.central import DemoCentral, ShedSpec
from simulators.mqtt_runner import MqttDeviceRunner
from simulators.scaled_clock import ScaledClock
from simulators.scenario import HOUR_MS, TZ_OFFSET_MS, Arrival, bay_count, plan_day
from simulators.shed_sim import (
    BUS_BAUD,
    BUS_ID,
    BoardPlan,
    SimShedDevices,
    Transport,
    make_shed_devices,
    plan_boards,
)

log = logging.getLogger("ebshed.demo")
SHED = "demo-1"
SHED_NAME = "1号车棚"
STEP_S = 10  # simulated seconds per driver step at max speed
MODBUS_STEP_S = 30  # with an RS-485 bus each step costs a real poll cycle on the wire
STAFF_ACK_MS = 10 * 60_000
STAFF_CLEAR_MS = 20 * 60_000
# At a live speed people use the staff board: the simulated staff member waits
# longer, and a socket overheats soon after the start so there is an alarm to answer.
LIVE_STAFF_ACK_MS = 2 * HOUR_MS
LIVE_HOT_SOCKET_AT_MS = 20 * 60_000
LIVE_HOT_SOCKET_FOR_MS = 30 * 60_000
HOT_C = 72.0
# Live snapshots to the central API at least every 5 simulated seconds, and this
# much real time apart: at 60x every 30 simulated seconds, twice a real second.
LIVE_EVERY_REAL_S = 0.5
# At the end of the run (`--hours`) everyone collects their bike: who is charging
# stops first (phone or card), and unplugs this long after. Staff stop what is
# still running after END_GRACE_MS.
END_COLLECT_MS = 2 * 60_000
END_GRACE_MS = 30 * 60_000
# Rules whose times a process's own hiccups count in, sped up: a relay seen
# carrying power after its off (a command and a reading in flight) and a lease
# that renewals must beat. At a live speed they last at least this many real
# seconds, so a busy machine never shows a fault that a real shed would not.
RELAY_FAULT_HOLD_REAL_S = 1.0
LEASE_REAL_S = 20.0
Broker = Literal["auto", "amqtt", "mosquitto"]


@dataclass
class DemoOptions:
    hours: float | None = 24.0
    speed: str = "max"
    data_dir: Path | None = None
    sockets: int = 24
    seed: int = 7
    start_hour: float = 18.0
    transport: Transport = "mqtt"
    live: bool = False
    # "auto": a Mosquitto found on PATH, in a process of its own, else amqtt in-process
    broker: Broker = "auto"
    progress_every_s: float | None = None  # print progress this often (real seconds)
    log_file: bool = False  # every log line to `demo.log` in the data dir, none on the console


@dataclass(frozen=True)
class BrokerInfo:
    """The MQTT broker a demo runs on."""

    name: str  # "mosquitto" or "amqtt"
    port: int
    detail: str  # where it runs

    def describe(self) -> str:
        return f"{self.name} on 127.0.0.1:{self.port} ({self.detail})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def demo_broker(choice: Broker, data_dir: Path) -> AsyncIterator[BrokerInfo]:
    """The demo's MQTT broker: `mosquitto` (on PATH) in a process of its own, so
    the broker has a core to itself, or `amqtt` inside the demo's process, which
    needs nothing but the Python packages; `auto` takes Mosquitto when there is one."""
    exe = mosquitto_path() if choice != "amqtt" else None
    if choice == "mosquitto" and exe is None:
        raise RuntimeError("--broker mosquitto: no mosquitto on PATH")
    if exe is not None:
        async with contextlib.AsyncExitStack() as stack:
            try:
                port = await stack.enter_async_context(mosquitto_broker(exe, data_dir))
            except RuntimeError:
                if choice == "mosquitto":
                    raise
                log.warning("%s did not start (see %s); running amqtt in-process", exe,
                            data_dir / "mosquitto.log")
            else:
                yield BrokerInfo("mosquitto", port, exe)
                return
    async with embedded_broker() as port:
        yield BrokerInfo("amqtt", port, "in-process")


MOSQUITTO_FALLBACKS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def mosquitto_path() -> str | None:
    """Mosquitto on PATH, or where Debian puts it (/usr/sbin is often not on a user's PATH)."""
    found = shutil.which("mosquitto")
    if found is not None:
        return found
    return next((p for p in MOSQUITTO_FALLBACKS if shutil.which(p) is not None), None)


# `user`: whoever runs the demo (a broker started by root would switch to user
# mosquitto, and the switch would undo `_end_with_parent`).
MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
user {user}
allow_anonymous true
persistence false
set_tcp_nodelay true
max_inflight_messages 0
max_queued_messages 0
log_dest stderr
log_type error
log_type warning
"""


@contextlib.asynccontextmanager
async def mosquitto_broker(exe: str, data_dir: Path, attempts: int = 3) -> AsyncIterator[int]:
    """A Mosquitto process on a free port of 127.0.0.1; its log in `mosquitto.log`."""
    conf = data_dir / "mosquitto.conf"
    log_path = data_dir / "mosquitto.log"
    for _ in range(attempts):
        port = free_port()
        conf.write_text(MOSQUITTO_CONF.format(port=port, user=getpass.getuser()), "utf-8")
        with log_path.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                exe, "-c", str(conf), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                # Ctrl-C stops the demo, which then stops the broker
                start_new_session=True, preexec_fn=_end_with_parent)
        try:
            if await _listening(port, proc):
                break
        except BaseException:
            await _end_process(proc)
            raise
        await _end_process(proc)  # the port was taken meanwhile, or it failed: try again
    else:
        raise RuntimeError(f"mosquitto did not start, see {log_path}")
    try:
        yield port
    finally:
        await _end_process(proc)


def _end_with_parent() -> None:
    """In the broker's process, before it starts: end when the demo's process ends,
    even if it is killed (Linux; elsewhere the demo's exit stops it)."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1


async def _listening(port: int, proc: asyncio.subprocess.Process,
                     timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.returncode is None:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


async def _end_process(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def embedded_broker() -> AsyncIterator[int]:
    """An in-process MQTT broker (amqtt) on a free port of 127.0.0.1."""
    from amqtt.broker import Broker

    port = free_port()
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            # Only anonymous access; no packet/event loggers or $SYS topics (they cost
            # time on every packet).
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.ERROR)
    await broker.start()
    try:
        yield port
    finally:
        await broker.shutdown()


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def logs_to_file(path: Path) -> Iterator[Path]:
    """Every log record (and Python warning) goes to `path` while inside, and none to
    the console: nothing is written over the live view."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    console = [h for h in root.handlers if isinstance(h, logging.StreamHandler)
               and not isinstance(h, logging.FileHandler)
               and getattr(h, "stream", None) in (sys.stderr, sys.stdout, sys.__stderr__)]
    for h in console:
        root.removeHandler(h)
    root.addHandler(handler)
    logging.captureWarnings(True)
    try:
        yield path
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        handler.close()
        for h in console:
            root.addHandler(h)


def demo_start_ms(start_hour: float) -> int:
    """Today's local date at `start_hour` (China time), as epoch ms."""
    today = dt.datetime.now(dt.UTC).date()
    midnight_utc = int(dt.datetime(today.year, today.month, today.day, tzinfo=dt.UTC).timestamp())
    return midnight_utc * 1000 - TZ_OFFSET_MS + int(start_hour * HOUR_MS)


def demo_settings(sockets: int, broker_port: int, data_dir: Path,
                  plans: list[BoardPlan], bus_device: str | None,
                  central: dict[str, Any] | None = None,
                  rules: dict[str, int] | None = None) -> Settings:
    boards: list[dict[str, Any]] = []
    for plan in plans:
        board: dict[str, Any] = {"id": plan.board_id, "ports": list(plan.ports)}
        if plan.transport == "modbus":
            board.update(transport="modbus", bus=BUS_ID, slave=plan.slave)
        boards.append(board)
    buses = []
    if bus_device is not None:
        # a simulated bus on a pty runs 8N2 (see docs/modbus-contract.md)
        buses.append({"id": BUS_ID, "device": bus_device, "baud": BUS_BAUD, "parity": "N",
                      "stopbits": 2})
    bays: dict[str, int | None] = {str(b): b for b in range(1, bay_count(sockets) + 1)}
    bays[str(len(bays) + 1)] = None  # two parking-only bays
    bays[str(len(bays) + 1)] = None
    # distinct low words: an RS-485 card reader reports only the last 4 hex digits
    cards: list[dict[str, Any]] = [
        {"uid": f"C0DE{0x1001 + n:04X}", "balance_fen": 1000} for n in range(40)
    ]
    cards += [{"uid": f"9A9A{0x2001 + n:04X}", "plan_until_ms": 4_102_444_800_000}
              for n in range(12)]
    raw: dict[str, Any] = {
        "shed": {"id": SHED, "name": SHED_NAME, "data_dir": str(data_dir)},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "keepalive": 60},
        "boards": boards,
        "buses": buses,
        "bays": bays,
        "cards": cards,
    }
    if rules:
        raw["rules"] = rules
    if central is not None:
        raw["central"] = central
    return settings_from_dict(raw)


def live_rules(speed: float | None) -> dict[str, int]:
    """The shed's rules changed for a sped-up demo (none at `--speed max`, where the
    driver waits for every message before time moves on)."""
    if speed is None:
        return {}
    defaults = RuleConfig()
    return {
        "relay_fault_hold_s": max(defaults.relay_fault_hold_s,
                                  math.ceil(RELAY_FAULT_HOLD_REAL_S * speed)),
        "lease_s": max(defaults.lease_s, math.ceil(LEASE_REAL_S * speed)),
    }


def shed_spec(settings: Settings) -> ShedSpec:
    """What the central API is told about the demo's shed when it is registered."""
    layout = settings.layout()
    ports = sorted(p for board in layout.boards.values() for p in board)
    return ShedSpec(SHED, SHED_NAME, ports, dict(layout.bays))


@dataclass
class Occupant:
    arrival: Arrival
    port: int | None
    bay: int | None
    session_id: str | None = None
    order_no: str | None = None  # paid by scan-to-pay
    card: str | None = None  # the card (or plan card) tapped to start


WALK_IN_STAY_MS = 6 * HOUR_MS  # a bike plugged for someone paying from a browser
SETTLED_MS = 30 * 60_000  # a bike plugged this long ago whose socket is idle is done


@dataclass
class DemoShed:
    """Plays the day: arrivals, departures, staff, one smoke test and one power cut
    (and, at a live speed, an overheating socket soon after the start)."""

    settings: Settings
    service: ControllerService
    devices: SimShedDevices
    arrivals: list[Arrival]
    rng: random.Random
    end_ms: int
    central: DemoCentral
    live: bool = False
    next_arrival: int = 0
    occupants: list[Occupant] = field(default_factory=list)
    unserved: int = 0
    gt_start: dict[str, float] = field(default_factory=dict)
    ground_truth: dict[str, float] = field(default_factory=dict)
    events: list[tuple[int, str]] = field(default_factory=list)
    card_pool: list[str] = field(default_factory=list)
    plan_pool: list[str] = field(default_factory=list)
    faults_seen: dict[int, int] = field(default_factory=dict)
    collecting: bool = False  # the run is over: everyone collects their bike

    def __post_init__(self) -> None:
        self.bays = self.devices.bays
        self.card_pool = [c["uid"] for c in self.settings.cards if "balance_fen" in c]
        self.plan_pool = [c["uid"] for c in self.settings.cards if "plan_until_ms" in c]
        self.service.add_listener(self._on_action)
        now = self.service.clock.now_ms()
        smoke_at = now + int(HOUR_MS * ((14.5 - ((now + TZ_OFFSET_MS) / HOUR_MS) % 24) % 24))
        if smoke_at < self.end_ms:
            self.events += [(smoke_at, "smoke_on"), (smoke_at + 120_000, "smoke_off")]
        cut_at = now + int(HOUR_MS * ((4.0 - ((now + TZ_OFFSET_MS) / HOUR_MS) % 24) % 24))
        if cut_at < self.end_ms and self.devices.mqtt_boards:
            self.events += [(cut_at, "power_cut"), (cut_at + 5 * 60_000, "power_restore")]
        if self.live and self.devices.mqtt_boards:
            hot_at = now + LIVE_HOT_SOCKET_AT_MS
            self.events += [(hot_at, "hot_socket"), (hot_at + LIVE_HOT_SOCKET_FOR_MS, "cooled")]
        self.events.sort()

    def _on_action(self, action: Action) -> None:
        if isinstance(action, SessionOpened):
            s = action.session
            if s.auth.kind == "order" and not any(o.port == s.port for o in self.occupants):
                self._walk_in(s.port, s.auth.ref, s.started_ms)
            self.gt_start[s.id] = self.devices.true_wh(s.port)
        elif isinstance(action, SessionClosed):
            s = action.session
            start = self.gt_start.get(s.id)
            if start is not None:
                self.ground_truth[s.id] = self.devices.true_wh(s.port) - start

    @property
    def open_sessions(self) -> int:
        return len(self.service.core.open_sessions())

    def finished(self, now_ms: int) -> bool:
        return (now_ms >= self.end_ms and self.open_sessions == 0
                and self.central.open_orders() == 0)

    async def play(self, now_ms: int) -> None:
        """Everything people and staff do up to `now_ms`."""
        if now_ms >= self.end_ms:
            self._collect(now_ms)
        while self.events and self.events[0][0] <= now_ms:
            _, what = self.events.pop(0)
            await self._scripted(what, now_ms)
        while (self.next_arrival < len(self.arrivals)
               and self.arrivals[self.next_arrival].t_ms <= now_ms):
            arrival = self.arrivals[self.next_arrival]
            self.next_arrival += 1
            if arrival.t_ms < self.end_ms:
                await self._arrive(arrival, now_ms)
        for occ in list(self.occupants):
            a = occ.arrival
            if a.stop_early_ms is not None and a.stop_early_ms <= now_ms and occ.port:
                await self._stop_early(occ, now_ms)
            if a.leave_ms <= now_ms:
                self._leave(occ, now_ms)
        self._staff(now_ms)

    def _collect(self, now_ms: int) -> None:
        """The run is over (`--hours`): whoever is charging stops it from the phone or
        with the card, and everyone unplugs soon after; staff stop what still runs
        `END_GRACE_MS` later (a session whose stop was lost). Nobody arrives any more."""
        if not self.collecting:
            self.collecting = True
            leave_ms = now_ms + END_COLLECT_MS
            ports = self.service.core.ports
            for occ in self.occupants:
                a = occ.arrival
                session = ports[occ.port].session if occ.port is not None else None
                running = session is not None and session.stop_ms is None
                occ.arrival = dataclasses.replace(
                    a, leave_ms=min(a.leave_ms, leave_ms),
                    stop_early_ms=now_ms if running else None)
        if now_ms >= self.end_ms + END_GRACE_MS:
            for session in self.service.core.open_sessions():
                if session.stop_ms is None:
                    self.service.stop_session(session.port, "operator")

    async def _scripted(self, what: str, now_ms: int) -> None:
        runner = self.devices.runner
        assert runner is not None
        victim = self.devices.mqtt_boards[-1].board_id if self.devices.mqtt_boards else None
        if what == "smoke_on":
            self.devices.set_smoke(True, now_ms)
        elif what == "smoke_off":
            self.devices.set_smoke(False, now_ms)
        elif what == "power_cut" and victim:
            await runner.power_cut(victim)
        elif what == "power_restore" and victim:
            await runner.power_restore(victim)
        elif what in ("hot_socket", "cooled"):
            board = self.devices.mqtt_boards[0]
            port = board.ports[-1]
            board.force_temp(port, HOT_C if what == "hot_socket" else None)

    def _free_port(self) -> int | None:
        core = self.service.core
        taken = {o.port for o in self.occupants}
        free = [p for p, port in core.ports.items()
                if port.state is SocketState.IDLE and p not in taken]
        return self.rng.choice(free) if free else None

    def _unplug_a_charged_bike(self, now_ms: int) -> int | None:
        """No socket is free, but one holds a bike whose charge is over (its socket
        is idle again): the newcomer unplugs it, as residents do, and its owner
        collects it later. The socket is theirs."""
        core = self.service.core
        done = [o for o in self.occupants
                if o.port is not None and core.ports[o.port].state is SocketState.IDLE
                and now_ms - o.arrival.t_ms >= SETTLED_MS]
        if not done:
            return None
        occ = self.rng.choice(done)
        port = occ.port
        assert port is not None
        self.devices.unplug(port, now_ms)
        occ.port = None
        return port

    def _free_bay(self, port: int | None) -> int | None:
        taken = {o.bay for o in self.occupants}
        for number, sensor in self.bays.items():
            mapped = self.settings.layout().bays.get(number)
            if number not in taken and not sensor.occupied and mapped == port:
                return number
        return None

    async def _arrive(self, a: Arrival, now_ms: int) -> None:
        if a.who == "parker":
            bay = self._free_bay(None) or self._free_bay(self._free_port())
            if bay is not None:
                self.occupants.append(Occupant(a, None, bay))
                self.devices.set_bay(bay, True, now_ms)
            return
        port = self._free_port() or self._unplug_a_charged_bike(now_ms)
        if port is None:
            self.unserved += 1
            await self._no_free_socket(a, now_ms)
            return
        bay = self._free_bay(port)
        occ = Occupant(a, port, bay)
        self.occupants.append(occ)
        self.devices.plug(port, self._bike(a), now_ms)
        if bay is not None:
            self.devices.set_bay(bay, True, now_ms)
        if a.pay in ("card", "plan"):
            occ.card = self._card_of(a)
            self.devices.tap(port, occ.card, now_ms)
        else:
            await self._scan_and_pay(occ, now_ms)

    async def _scan_and_pay(self, occ: Occupant, now_ms: int) -> None:
        """Scan the socket's QR code, order, pay on the provider's page (real HTTP)."""
        a, port = occ.arrival, occ.port
        assert port is not None
        http = self.central.http
        assert http is not None
        body: dict[str, Any] = {"shed_id": SHED, "port": port, "phone": self._phone(a)}
        if a.pay == "order_full":
            body["mode"] = "until_full"
        else:
            body.update(mode="amount", amount_fen=a.amount_fen)
        made = await http.post("/api/v1/orders", json=body)
        self.central.poke()
        if made.status_code not in (200, 201):
            # the socket cannot be paid for (taken by someone paying from a browser)
            log.info("arrival %s at socket %d: order refused: %s", a.id, port, made.text)
            self._leave(occ, now_ms)
            self.unserved += 1
            return
        created = made.json()
        paid = await http.post(f"{created['pay_url']}/confirm")
        if paid.status_code != 200:
            log.warning("arrival %s: payment of %s failed: %s", a.id,
                        created["out_trade_no"], paid.status_code)
            self._leave(occ, now_ms)
            return
        occ.order_no = created["out_trade_no"]

    async def _no_free_socket(self, a: Arrival, now_ms: int) -> None:
        """Every socket is taken: a card holder still taps a busy socket's reader
        (the shed refuses it), the others scan a busy socket's QR sticker. The
        central API counts both as unserved demand."""
        busy = [p for p, port in self.service.core.ports.items()
                if port.state is not SocketState.IDLE]
        if not busy:
            return
        target = self.rng.choice(busy)
        if a.pay in ("card", "plan"):
            self.devices.tap(target, self._card_of(a), now_ms)
            return
        http = self.central.http
        assert http is not None
        http.cookies.clear()  # another person's phone
        await http.get(f"/s/{SHED}/{target}", params={"src": "qr"})

    def _card_of(self, a: Arrival) -> str:
        """The card a card (or monthly plan) holder taps."""
        return self.rng.choice(self.card_pool if a.pay == "card" else self.plan_pool)

    def _phone(self, a: Arrival) -> str:
        """A mainland mobile number per resident (the same person on every run)."""
        return f"139{int(a.id[1:]) * 7919 % 100_000_000:08d}"

    def _walk_in(self, port: int, order_no: str, now_ms: int) -> None:
        """Someone paid for this socket from a browser: their bike is plugged in."""
        stay = Arrival(f"w-{order_no}", now_ms, "resident", "lithium", "order_full", 0,
                       now_ms + WALK_IN_STAY_MS, None, self.rng.uniform(0.2, 0.5))
        self.occupants.append(Occupant(stay, port, None, order_no=order_no))
        self.devices.plug(port, self._bike(stay), now_ms)

    def _bike(self, a: Arrival) -> ebike.EBike:
        if a.bike == "overdraw":
            return ebike.overdraw_charger(self.rng, bike_id=a.id)
        if a.bike == "no_taper":
            return ebike.no_taper_charger(self.rng, soc=a.soc, bike_id=a.id)
        if a.bike == "lithium":
            return ebike.lithium(self.rng, soc=a.soc, bike_id=a.id)
        return ebike.lead_acid(self.rng, soc=a.soc, bike_id=a.id)

    async def _stop_early(self, occ: Occupant, now_ms: int) -> None:
        """Stop from the phone (scan-to-pay) or tap the card again."""
        assert occ.port is not None
        occ.arrival = dataclasses.replace(occ.arrival, stop_early_ms=None)
        if occ.order_no is not None:
            assert self.central.http is not None
            stop = await self.central.http.post(f"/api/v1/orders/{occ.order_no}/stop")
            self.central.poke()
            if stop.status_code != 202:
                log.info("stop of %s: %s", occ.order_no, stop.text)
            return
        port = self.service.core.ports[occ.port]
        running = port.session is not None and port.state in (
            SocketState.CHARGING, SocketState.FLOATING, SocketState.AUTHORIZED)
        if running and occ.card is not None:  # the same card on the reader stops it
            self.devices.tap(occ.port, occ.card, now_ms)

    def _leave(self, occ: Occupant, now_ms: int) -> None:
        self.occupants.remove(occ)
        if occ.port is not None:
            self.devices.unplug(occ.port, now_ms)
        if occ.bay is not None:
            self.devices.set_bay(occ.bay, False, now_ms)

    def _staff(self, now_ms: int) -> None:
        """A diligent staff member: acknowledges alarms, clears faults after a check."""
        core = self.service.core
        ack_after = LIVE_STAFF_ACK_MS if self.live else STAFF_ACK_MS
        for alarm in list(core.alarms.values()):
            if alarm.acked_ms is None and now_ms - alarm.raised_ms >= ack_after:
                self.service.acknowledge(alarm.id, "staff-demo", "checked on site")
        for number, port in core.ports.items():
            if port.state is SocketState.FAULT:
                since = self.faults_seen.setdefault(number, now_ms)
                plugged = any(o.port == number for o in self.occupants)
                if now_ms - since >= STAFF_CLEAR_MS and not plugged:
                    self.service.clear_fault(number)
                    self.faults_seen.pop(number, None)


class Barrier:
    """Waits until the controller and the simulated devices have handled everything.

    Fast path: the controller has received every message the devices published
    (less `offset`), every command sent was handled by a board and acknowledged.
    When that cannot happen without time moving on (a board's power is cut with
    messages in flight, a command waits for a dead board's ack timeout), the
    barrier ends once nothing has moved for `quiet_s` of real time, or for
    `lost_s` while messages published have not arrived or commands wait to be
    sent (a busy machine may take longer than `quiet_s` for either). Each quiet
    exit re-calibrates `offset`: retained messages from earlier runs arrive
    extra, messages on a cut connection never arrive.
    """

    def __init__(self, service: ControllerService, runner: MqttDeviceRunner,
                 quiet_s: float = 0.05, lost_s: float = 1.0) -> None:
        self.service = service
        self.runner = runner
        self.quiet_s = quiet_s
        self.lost_s = lost_s
        self.offset = 0  # received minus published when everything has arrived
        bridge = service.bridge
        self.buses: list[ModbusBridge] = []
        if isinstance(bridge, RoutingBridge):
            self.buses = [b for b in bridge.members() if isinstance(b, ModbusBridge)]
            bridge = bridge.member("mqtt")
        assert isinstance(bridge, MqttBridge)
        self.mqtt = bridge
        self.marks: list[int] = []
        self.mark()

    def mark(self) -> None:
        """Call right after advancing the clock: the next `settle` waits for the
        buses' poll cycles begun from now on (even if they end before it is called)."""
        self.marks = [bus.cycle_no for bus in self.buses]

    def _snapshot(self) -> tuple[int, ...]:
        c = self.mqtt.counters()
        return (c["received"], c["commands_sent"], c["pending_commands"],
                self.runner.published, self.runner.commands_handled)

    async def calibrate(self) -> None:
        """Call when nothing is in flight but retained messages may still arrive."""
        await self.settle(quiet_only=True)

    async def settle(self, timeout_s: float = 30.0, *, quiet_only: bool = False,
                     new_cycle: bool = True) -> None:
        """`new_cycle=False`: settle again at the same time (after commands from
        the central API): the buses only finish their commands."""
        for bus, mark in zip(self.buses if not quiet_only else (), self.marks, strict=False):
            # a whole poll cycle at the new time (see `mark`), commands done
            await asyncio.wait_for(bus.barrier(mark) if new_cycle else bus.commands_done(),
                                   timeout_s)
        deadline = time.monotonic() + timeout_s
        last, still_since, spins = None, time.monotonic(), 0
        while time.monotonic() < deadline:
            spins += 1
            await self.runner.drain(timeout_s, barrier=False)
            snap = self._snapshot()
            received, sent, pending, published, handled = snap
            caught_up = received - self.offset >= published
            if not quiet_only and caught_up and handled >= sent and pending == 0:
                return
            now = time.monotonic()
            # Quick to give up only on what cannot move before the clock does: a
            # command sent to a board that does not answer (its ack timeout).
            dead_board = caught_up and handled < sent
            quiet = self.quiet_s if quiet_only or dead_board else self.lost_s
            if snap != last:
                last, still_since = snap, now
            elif now - still_since >= quiet:
                self.offset = received - published
                return
            await asyncio.sleep(0 if spins < 50 else 0.0005)
        log.warning("barrier timed out: %s", self._snapshot())


@dataclass
class Demo:
    """A running demo stack (`demo_stack`): the shed, its controller, the central side."""

    opts: DemoOptions
    clock: Clock
    shed: DemoShed
    central: DemoCentral
    start_ms: int
    data_dir: Path
    users: dict[str, str]  # login -> password, printed for people to log in
    broker: BrokerInfo
    log_path: Path | None = None

    @property
    def fast(self) -> bool:
        return self.opts.speed == "max"

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Play the day to its end (or until `stop`, or Ctrl-C at a live speed)."""
        progress = Progress(self, self.opts.progress_every_s)
        if self.fast:
            assert isinstance(self.clock, SimClock)
            await _run_max(self.shed, self.clock, progress)
        else:
            footer = f"log {self.log_path}  " if self.log_path else ""
            await _run_live(self.shed, self.clock, self.opts.live, stop or asyncio.Event(),
                            progress, footer + f"broker {self.broker.name}")

    def summary(self, wall_s: float) -> dict[str, Any]:
        out = summarize(self.shed, self.clock.now_ms() - self.start_ms, wall_s)
        out["transport"] = self.opts.transport
        out.update(self.central.money())
        out["data_dir"] = str(self.data_dir) if self.opts.data_dir else None
        out["broker"] = self.broker.name
        return out


class Progress:
    """A line on stderr every `every_s` real seconds: simulated time, sessions, wall time."""

    def __init__(self, demo: Demo, every_s: float | None) -> None:
        self.demo = demo
        self.every_s = every_s
        self.wall0 = time.monotonic()
        self.next_at = self.wall0 + (every_s or 0.0)
        self.lines = 0

    def __call__(self) -> None:
        if self.every_s is None or time.monotonic() < self.next_at:
            return
        now = time.monotonic()
        self.next_at = now + self.every_s
        self.lines += 1
        print(self.line(now - self.wall0), file=sys.stderr, flush=True)

    def line(self, wall_s: float) -> str:
        demo = self.demo
        sim_ms = demo.clock.now_ms()
        stats = demo.shed.service.stats
        local = dt.datetime.fromtimestamp(sim_ms / 1000, dt.timezone(dt.timedelta(hours=8)))
        of = f" of {demo.opts.hours:g}" if demo.opts.hours is not None else ""
        return (f"progress: simulated {(sim_ms - demo.start_ms) / HOUR_MS:.1f} h{of} "
                f"({local:%m-%d %H:%M}), sessions {stats.sessions_opened} started "
                f"{stats.sessions_closed} closed {len(demo.shed.service.core.open_sessions())} "
                f"open, wall {wall_s:.0f} s")


@contextlib.asynccontextmanager
async def demo_stack(opts: DemoOptions) -> AsyncIterator[Demo]:
    """Everything of the demo, started: broker, central API and provider, the
    controller (registered with the API), the simulated devices and people."""
    rng = random.Random(opts.seed)
    start_ms = demo_start_ms(opts.start_hour)
    fast = opts.speed == "max"
    clock: Clock = SimClock(start_ms) if fast else ScaledClock(start_ms, float(opts.speed))
    hours = opts.hours if opts.hours is not None else 24.0 * 365
    central = DemoCentral(clock, opts.data_dir or Path(), rng, None if fast else float(opts.speed))
    async with contextlib.AsyncExitStack() as stack:
        data_dir = opts.data_dir
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ebshed-demo-")))
        data_dir.mkdir(parents=True, exist_ok=True)
        central.data_dir = data_dir
        log_path = stack.enter_context(logs_to_file(data_dir / "demo.log")) if opts.log_file \
            else None
        broker = await stack.enter_async_context(demo_broker(opts.broker, data_dir))
        broker_port = broker.port
        await stack.enter_async_context(central.running())
        plans = plan_boards(opts.sockets, opts.transport)
        bay_numbers = list(range(1, bay_count(opts.sockets) + 3))
        speed = None if fast else float(opts.speed)
        devices = make_shed_devices(SHED, plans, bay_numbers, rng, clock, speed)
        if devices.bus is not None:
            await stack.enter_async_context(devices.bus)
        bus_device = devices.bus.device if devices.bus is not None else None
        settings = demo_settings(opts.sockets, broker_port, data_dir, plans, bus_device,
                                 rules=live_rules(speed))
        token = central.register(shed_spec(settings))
        users = central.demo_users()
        live_every_s = min(300.0, max(5.0, LIVE_EVERY_REAL_S * (speed or 1.0)))
        settings = settings.model_copy(update={"central": CentralSettings(
            url=central.url, token=token, poll_wait_s=1 if fast else 25,
            live_every_s=live_every_s)})
        runner = MqttDeviceRunner("127.0.0.1", broker_port, SHED, devices.mqtt_devices, clock)
        devices.runner = runner
        # Closed in reverse: the controller goes before the boards, so that boards
        # leaving raise no alarms.
        stack.push_async_callback(runner.close)
        service = ControllerService(settings, clock)
        await stack.enter_async_context(
            running_controller(settings, clock, service, central_loops=not fast))
        await runner.start()
        shed = DemoShed(settings, service, devices,
                        plan_day(rng, start_ms, hours, opts.sockets), rng,
                        start_ms + int(hours * HOUR_MS), central, live=not fast)
        yield Demo(opts, clock, shed, central, start_ms, data_dir, users, broker, log_path)


async def run_demo(opts: DemoOptions) -> dict[str, Any]:
    wall0 = time.monotonic()
    async with demo_stack(opts) as demo:
        if not demo.fast:
            print_urls(demo)
        else:
            print(f"MQTT broker: {demo.broker.describe()}", file=sys.stderr, flush=True)
            if demo.log_path is not None:
                print(f"log: {demo.log_path}", file=sys.stderr, flush=True)
        await demo.run()
        summary = demo.summary(time.monotonic() - wall0)
        if demo.log_path is not None:
            print(f"log: {demo.log_path}: {log_warnings(demo.log_path)} warnings"
                  + ("" if opts.data_dir else " (a temporary folder: --data-dir keeps it)"),
                  file=sys.stderr, flush=True)
        return summary


def log_warnings(path: Path) -> int:
    """Lines of warnings and errors in a log written with `LOG_FORMAT`."""
    levels = (" WARNING ", " ERROR ", " CRITICAL ")
    with path.open(encoding="utf-8", errors="replace") as f:
        return sum(1 for line in f if any(level in line[:40] for level in levels))


async def _run_max(shed: DemoShed, clock: SimClock, progress: Progress) -> None:
    t = clock.now_ms()
    runner = shed.devices.runner
    assert runner is not None
    barrier = Barrier(shed.service, runner)
    await barrier.calibrate()
    link = (shed.service.uplink, shed.service.poller)
    await shed.central.settle(link, barrier, new_cycle=False)  # the shed reports in
    step_s = STEP_S if not barrier.buses else MODBUS_STEP_S
    # Past the end: no new arrivals; sessions still running end by themselves.
    limit = shed.end_ms + 2 * HOUR_MS
    while not shed.finished(t) and t < limit:
        t += step_s * 1000
        clock.advance_to(t)
        barrier.mark()
        await shed.play(t)
        await runner.step(t)
        await shed.central.settle(link, barrier)
        progress()


async def _run_live(shed: DemoShed, clock: Clock, live: bool, stop: asyncio.Event,
                    progress: Progress, footer: str = "") -> None:
    """Real (scaled) time until the day is over, `stop` or Ctrl-C, refreshing the view."""
    from simulators.live_view import LiveView

    loop = asyncio.get_running_loop()
    # Ctrl-C, and a closed terminal or a kill: the demo winds down (the broker with it)
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    runner = shed.devices.runner
    assert runner is not None
    ticker = runner.spawn(runner.run(tick_s=1.0))
    view = LiveView(shed.service, shed, footer) if live else None
    try:
        with view.show() if view else contextlib.nullcontext():
            while not shed.finished(clock.now_ms()) and not stop.is_set():
                await shed.play(clock.now_ms())
                if view:
                    view.refresh()
                else:
                    progress()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        ticker.cancel()
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def print_urls(demo: Demo) -> None:
    """Where a person can join the live demo (printed before the live view)."""
    url = demo.central.url
    logins = "\n".join(f"  {'Log in as ' + login:<19}user {login}   password {password}"
                       for login, password in demo.users.items())
    print(f"""
  Staff board        {url}/board     (log in at {url}/login)
  Office reports     {url}/reports
{logins}
  Shed page          {url}/s/{SHED}
  Socket 7 (QR)      {url}/s/{SHED}/7   pay there, then press 确认支付 / Pay
  My charges         {url}/me   (SMS codes: {url}/api/v1/dev/sms)
  Central API        {url}/docs   (admin token {demo.central.admin_token})
  Payment provider   {demo.central.provider.url}
  MQTT broker        {demo.broker.describe()}
  Log                {demo.log_path or "the console"}
""", flush=True)


def summarize(shed: DemoShed, sim_ms: int, wall_s: float) -> dict[str, Any]:
    service = shed.service
    closed: list[Session] = service.closed
    sessions: list[dict[str, Any]] = []
    for s in closed:
        gt = shed.ground_truth.get(s.id)
        register = (register_delta(s.first_wh, s.last_wh)
                    if s.first_wh is not None and s.last_wh is not None else 0)
        sessions.append({
            "id": s.id,
            "port": s.port,
            "auth": s.auth.kind,
            "order_no": s.auth.ref if s.auth.kind == "order" else None,
            "prepaid_fen": s.auth.prepaid_fen,
            "end_reason": s.end_reason,
            "billed_wh": s.energy_wh,
            "register_wh": register,
            "ground_truth_wh": round(gt, 2) if gt is not None else None,
            "billed_fen": s.charged_fen,
            "refund_fen": s.refund_fen,
            "minutes": round(((s.stop_ms or s.started_ms) - s.started_ms) / 60_000, 1),
            "flags": sorted(s.flags),
        })
    alarms = Counter(row.kind for row in service.store.alarm_rows())
    counters = service.bridge.counters() if service.bridge else {}  # type: ignore[attr-defined]
    return {
        "shed": SHED,
        "sim_hours": round(sim_ms / HOUR_MS, 2),
        "wall_seconds": round(wall_s, 1),
        "sessions_started": service.stats.sessions_opened,
        "sessions_closed": service.stats.sessions_closed,
        "sessions_open": len(service.core.open_sessions()),
        "end_reasons": dict(Counter(s["end_reason"] for s in sessions)),
        "billed_wh": sum(s["billed_wh"] for s in sessions),
        "register_wh": sum(s["register_wh"] for s in sessions),
        "ground_truth_wh": round(sum(s["ground_truth_wh"] or 0 for s in sessions), 1),
        "max_abs_error_wh": round(max((abs(s["billed_wh"] - s["ground_truth_wh"])
                                       for s in sessions if s["ground_truth_wh"] is not None),
                                      default=0.0), 2),
        "billed_fen": sum(s["billed_fen"] for s in sessions),
        "refund_fen": sum(s["refund_fen"] for s in sessions),
        "alarms": dict(alarms),
        "unserved_arrivals": shed.unserved,
        "card_refusals": dict(service.stats.card_refusals),
        "messages": {k: v for k, v in counters.items() if v},
        "sessions": sessions,
    }


async def run_sim_shed(settings: Settings, speed: float, seed: int) -> None:
    """Simulated boards and bikes for a real controller (`ebshed sim shed`).

    MQTT boards connect to the configured broker; RS-485 boards answer on a
    pseudo-terminal linked at the configured bus device path.
    """
    rng = random.Random(seed)
    clock = ScaledClock(int(time.time() * 1000), speed)
    plans = [BoardPlan(b.id, tuple(b.ports), b.transport, b.slave) for b in settings.boards]
    if len(settings.buses) > 1:
        raise ValueError("the simulator serves one RS-485 bus per process")
    devices = make_shed_devices(settings.shed.id, plans, [int(b) for b in settings.bays], rng,
                                clock, speed)
    if devices.bus is not None:
        devices.bus.link = settings.buses[0].device
    arrivals = plan_day(rng, clock.now_ms(), 24 * 365, len(devices.ports))
    cards = [str(c["uid"]) for c in settings.cards] or ["04A1B2C3"]
    plugged: dict[int, int] = {}
    async with contextlib.AsyncExitStack() as stack:
        if devices.bus is not None:
            await stack.enter_async_context(devices.bus)
            log.info("RS-485 boards answer on %s", settings.buses[0].device)
        runner = MqttDeviceRunner(settings.mqtt.host, settings.mqtt.port, settings.shed.id,
                                  devices.mqtt_devices, clock)
        devices.runner = await stack.enter_async_context(runner)
        runner.spawn(runner.run(tick_s=1.0))
        i = 0
        while True:
            now = clock.now_ms()
            while i < len(arrivals) and arrivals[i].t_ms <= now:
                a = arrivals[i]
                i += 1
                free = [p for p in devices.ports if p not in plugged]
                if a.who == "parker" or not free:
                    continue
                port = rng.choice(free)
                plugged[port] = a.leave_ms
                devices.plug(port, ebike.random_bike(rng), now)
                devices.tap(port, rng.choice(cards), now)
                log.info("bike %s plugged into socket %d", a.id, port)
            for port, leave in list(plugged.items()):
                if leave <= now:
                    del plugged[port]
                    devices.unplug(port, now)
            await clock.sleep(5)
