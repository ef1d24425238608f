"""A shed of simulated bikes driven through the pure core on a simulated clock.

Each socket's meter follows its bike (simulators/ebike.py): the power of each
step and the energy it took, counted on a register; its temperature follows
ambient plus the socket's heating by the power (and a worn plug's), with the
socket's thermal time constant. No broker, no threads: a month of a 24-socket
shed runs in seconds. Residents come at random, pay, plug in and take the bike
away when the session ends.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from controller.core.anomaly import ANOMALY_KINDS
from controller.core.config import RuleConfig, ShedLayout
from controller.core.model import (
    Action,
    AlarmChanged,
    Authorization,
    SendCommand,
    Session,
    SessionClosed,
)
from controller.core.shed import ShedCore
from controller.core.tariffs import default_tariff
from firmware_bridge.messages import BoardStatus, CmdAck, Telemetry
from simulators.ebike import EBike, random_bike

T0 = 1_795_341_000_000
TEMP_TAU_S = 900.0  # as simulators/board.py
MEAN_GAP_MS = 3 * 3_600_000  # a socket stays free this long on average
IDLE_REPORT_MS = 240_000  # an idle port reports every 4 min (the board stays online)


@dataclass
class Socket:
    port: int
    heat_k: float  # degrees C per W
    wh: float = 1000.0
    seq: int = 0
    relay: bool = False
    temp_c: float = 22.0
    bike: EBike | None = None
    last_report_ms: int = 0
    next_arrival_ms: int = 0


@dataclass
class AnomalyShed:
    ports: int = 24
    rules: RuleConfig = field(default_factory=RuleConfig)
    seed: int = 1
    step_s: int = 30
    now: int = T0
    anomalies: list[tuple[int, str, int | None, str]] = field(default_factory=list)  # raised
    closed: list[Session] = field(default_factory=list)
    other_alarms: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        ids = itertools.count(1)
        layout = ShedLayout("anomaly-1", {"b1": tuple(range(1, self.ports + 1))})
        self.core = ShedCore(layout, self.rules, default_tariff(), lambda: f"id{next(ids)}", T0)
        self.sockets = {
            p: Socket(p, self.rng.uniform(0.008, 0.015)) for p in range(1, self.ports + 1)
        }
        self._apply(self.core.handle(BoardStatus("b1", True, "1.0", tuple(self.sockets), T0), T0))
        for s in self.sockets.values():
            self._report(s, 0.0)
        self.orders = itertools.count(1)

    def ambient_c(self) -> float:
        day = (self.now - T0) / 86_400_000
        return 20.0 + 6.0 * math.sin(2 * math.pi * day)

    def plug(self, port: int, bike: EBike) -> Session:
        sock = self.sockets[port]
        sock.bike = bike
        auth = Authorization("order", f"order-{next(self.orders)}", 800, "until_full")
        result, actions = self.core.authorize(port, auth, self.now)
        assert isinstance(result, Session), result
        self._apply(actions)
        return result

    def step(self) -> None:
        dt = self.step_s
        self.now += dt * 1000
        ambient = self.ambient_c()
        decay = math.exp(-dt / TEMP_TAU_S)
        for sock in self.sockets.values():
            bike = sock.bike
            w = 0.0
            if bike is not None and sock.relay:
                w = bike.power_w()
                sock.wh += bike.step(dt, True)
            extra_k = bike.spec.contact_k if bike is not None else 0.0
            target = ambient + (sock.heat_k + extra_k) * w
            sock.temp_c = target + (sock.temp_c - target) * decay
            if sock.relay or self.now - sock.last_report_ms >= IDLE_REPORT_MS:
                self._report(sock, w)
        self._apply(self.core.tick(self.now))

    def run(self, seconds: float, arrivals: Callable[[Socket], EBike | None] | None = None) -> None:
        end = self.now + int(seconds * 1000)
        while self.now < end:
            if arrivals is not None:
                for sock in self.sockets.values():
                    if sock.bike is None and self.now >= sock.next_arrival_ms:
                        bike = arrivals(sock)
                        if bike is not None and self.core.can_start(sock.port) is None:
                            self.plug(sock.port, bike)
            self.step()

    def healthy_arrival(self, sock: Socket) -> EBike | None:
        """A healthy bike (40 % lithium), 5-60 % charged."""
        return random_bike(self.rng, bike_id=f"bike-{sock.port}-{self.now}")

    def kinds(self) -> list[str]:
        return [kind for _, kind, _, _ in self.anomalies]

    def _report(self, sock: Socket, w: float) -> None:
        sock.seq += 1
        sock.last_report_ms = self.now
        t = Telemetry(
            sock.port, self.now, sock.seq, 230.0, w / 230, w,
            int(sock.wh) % (1 << 32), sock.relay, round(sock.temp_c, 1),
        )  # fmt: skip
        self._apply(self.core.handle(t, self.now))

    def _apply(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, SendCommand):
                cmd = a.cmd
                sock = self.sockets[cmd.port]
                sock.relay = cmd.op in ("on", "renew")
                self._apply(self.core.handle(CmdAck(cmd.port, cmd.id, True, sock.relay), self.now))
                if cmd.op == "off":  # boards report at once when a relay changes
                    self._report(sock, 0.0)
            elif isinstance(a, AlarmChanged):
                alarm = a.alarm
                if alarm.kind in ANOMALY_KINDS and alarm.active:
                    self.anomalies.append((self.now, alarm.kind, alarm.port, alarm.detail))
                elif a.alarm.active:
                    self.other_alarms.append(a.alarm.kind)
            elif isinstance(a, SessionClosed):
                self.closed.append(a.session)
                sock = self.sockets[a.session.port]
                sock.bike = None  # the resident takes the bike away
                sock.next_arrival_ms = self.now + int(self.rng.expovariate(1 / MEAN_GAP_MS))
