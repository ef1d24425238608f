"""A tiny driver for the pure core: a shed, a clock value and a meter per port.

Tests call the core directly and synchronously (no broker, no fixtures), the
way a board would feed it: one telemetry sample every few seconds.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from controller.core.config import RuleConfig, ShedLayout
from controller.core.model import (
    Action,
    AlarmChanged,
    Authorization,
    PublishState,
    SendCommand,
    Session,
    SessionClosed,
)
from controller.core.shed import ShedCore
from controller.core.tariffs import default_tariff
from firmware_bridge.messages import BoardStatus, CmdAck, DeviceMessage, Telemetry

T0 = 1_795_341_000_000  # 2026-11-22 ~ 07:10 Beijing time


@dataclass
class Rig:
    core: ShedCore
    now: int = T0
    wh: dict[int, float] = field(default_factory=dict)
    seq: dict[int, int] = field(default_factory=dict)
    relay: dict[int, bool] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    auto_ack: bool = True

    def feed(self, msg: DeviceMessage) -> list[Action]:
        out = self.core.handle(msg, self.now)
        self._record(out)
        return out

    def _record(self, out: Iterable[Action]) -> None:
        for a in list(out):
            self.actions.append(a)
            if isinstance(a, SendCommand) and self.auto_ack:
                cmd = a.cmd
                on = cmd.op in ("on", "renew")
                self.relay[cmd.port] = on
                self._record(self.core.handle(CmdAck(cmd.port, cmd.id, True, on), self.now))
                if cmd.op == "off":  # boards report at once when a relay changes
                    self.tel(cmd.port, 0.0)

    def tel(
        self,
        port: int,
        w: float,
        temp_c: float | None = 30.0,
        relay: bool | None = None,
        ts: int | None = None,
    ) -> list[Action]:
        """One sample; energy since the last sample follows from `w` when the relay is on."""
        on = self.relay.get(port, False) if relay is None else relay
        seq = self.seq.get(port, -1) + 1
        self.seq[port] = seq
        wh = self.wh.get(port, 1000.0)
        self.wh[port] = wh
        return self.feed(
            Telemetry(
                port,
                self.now if ts is None else ts,
                seq,
                230.0,
                w / 230,
                w,
                int(wh) % (1 << 32),
                on,
                temp_c,
            )
        )

    def run(
        self,
        seconds: int,
        w: float | dict[int, float],
        step: int = 10,
        ports: Iterable[int] | None = None,
    ) -> None:
        """Advance time; every `step` s each port reports, then the core ticks."""
        ports = list(ports) if ports is not None else list(self.core.ports)
        for _ in range(seconds // step):
            self.now += step * 1000
            for p in ports:
                pw = w[p] if isinstance(w, dict) else w
                on = self.relay.get(p, False)
                if on:
                    self.wh[p] = self.wh.get(p, 1000.0) + pw * step / 3600
                self.tel(p, pw if on else 0.0)
            self.tick()

    def tick(self) -> list[Action]:
        out = self.core.tick(self.now)
        self._record(out)
        return out

    def authorize(self, port: int, auth: Authorization) -> Session:
        result, out = self.core.authorize(port, auth, self.now)
        self._record(out)
        assert isinstance(result, Session), result
        return result

    def closed(self) -> list[Session]:
        return [a.session for a in self.actions if isinstance(a, SessionClosed)]

    def alarms(self) -> list[str]:
        return [
            a.alarm.kind for a in self.actions if isinstance(a, AlarmChanged) and a.alarm.active
        ]

    def commands(self, port: int | None = None) -> list[str]:
        return [
            a.cmd.op
            for a in self.actions
            if isinstance(a, SendCommand) and (port is None or a.cmd.port == port)
        ]

    def states(self, port: int) -> list[str]:
        return [a.state for a in self.actions if isinstance(a, PublishState) and a.port == port]


def make_rig(
    ports: int = 4, rules: RuleConfig | None = None, bays: dict[int, int | None] | None = None
) -> Rig:
    ids = itertools.count(1)
    layout = ShedLayout("demo-1", {"b1": tuple(range(1, ports + 1))}, bays or {})
    core = ShedCore(layout, rules or RuleConfig(), default_tariff(), lambda: f"id{next(ids)}", T0)
    rig = Rig(core)
    rig.feed(BoardStatus("b1", True, "1.0", tuple(range(1, ports + 1)), T0))
    for p in core.ports:
        rig.tel(p, 0.0)
    return rig


ORDER = Authorization("order", "order-1", 500, "until_full")
