"""The demo's live text view: every socket's state, power and session energy."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from controller.service import ControllerService

if TYPE_CHECKING:
    from simulators.demo import DemoShed

STATE_STYLE = {
    "idle": "green",
    "authorized": "cyan",
    "charging": "bold yellow",
    "floating": "yellow",
    "finishing": "cyan",
    "fault": "bold red",
    "offline": "dim",
    "disabled": "magenta",
}
STATE_ZH = {
    "idle": "空闲", "authorized": "待插电", "charging": "充电中", "floating": "浮充",
    "finishing": "结束中", "fault": "故障", "offline": "离线", "disabled": "停用",
}


class LiveView:
    def __init__(self, service: ControllerService, shed: DemoShed, footer: str = "") -> None:
        self.service = service
        self.shed = shed
        self.footer = footer  # e.g. where the log and the broker are
        self._live: Live | None = None

    @contextlib.contextmanager
    def show(self) -> Iterator[None]:
        # Cropped to the terminal: a view taller than the screen would leave its top
        # lines behind on every refresh. Log lines go to a file (`logs_to_file`).
        with Live(self.render(), refresh_per_second=2, screen=False,
                  vertical_overflow="crop") as live:
            self._live = live
            yield
        self._live = None

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self.render())

    def render(self) -> Group:
        core = self.service.core
        now = self.service.clock.now_ms()
        local = dt.datetime.fromtimestamp(now / 1000, dt.timezone(dt.timedelta(hours=8)))
        head = Text.assemble(
            (f"{core.layout.shed_id}  ", "bold"),
            f"{local:%Y-%m-%d %H:%M}  ",
            (f"free sockets {core.free_sockets()}/{len(core.ports)}  ", "green"),
            f"free bays {core.free_bays()}/{len(core.bays)}  ",
            f"shed {core.shed_power_w():.0f} W / {core.rules.budget_w} W  ",
            f"sessions {self.service.stats.sessions_opened} started, "
            f"{self.service.stats.sessions_closed} closed  ",
            (f"unserved {self.shed.unserved}", "red" if self.shed.unserved else ""),
        )
        table = Table(expand=False, show_edge=False, pad_edge=False)
        for col in ("socket", "state", "W", "Wh", "°C", "socket", "state", "W", "Wh", "°C"):
            table.add_column(col, justify="right")
        ports = list(core.ports.values())
        half = (len(ports) + 1) // 2
        for left, right in zip(ports[:half], ports[half:] + [None] * (2 * half - len(ports)),
                               strict=True):
            table.add_row(*self._cells(left), *(self._cells(right) if right else [""] * 5))
        alarms = [f"[red]{a.kind}[/red] {a.detail}" + (" (acked)" if a.acked_ms else "")
                  for a in core.alarms.values()]
        return Group(head, table, Text.from_markup("\n".join(alarms[-5:]) or "no alarms"),
                     Text(f"Ctrl-C to quit  {self.footer}".rstrip(), style="dim"))

    @staticmethod
    def _cells(p: object) -> list[Text | str]:
        from controller.core.shed import Port

        assert isinstance(p, Port)
        state = p.state.value
        s = p.session
        return [
            str(p.number),
            Text(f"{STATE_ZH[state]} {state}", style=STATE_STYLE[state]),
            f"{p.w:.0f}",
            str(s.energy_wh) if s else "",
            f"{p.temp_c:.0f}" if p.temp_c is not None else "",
        ]
