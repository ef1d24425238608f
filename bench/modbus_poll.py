"""Bench: Modbus RTU poll-cycle time against the wire time of the same frames.

For each configuration (boards of `sockets` sockets on one bus, at a baud
rate) a simulated bus (`simulators.modbus_bus`, real wire timing on a pty)
is polled by the real `ModbusBridge` with its default settings, back to back
(`poll_interval_s = 0`). The bus runs in a process of its own, as the boards
are hardware of their own. Two figures:

- **cycle time** against the theoretical wire time of the frames that cycle
  exchanged (characters at 11 bits, 3.5-character gaps; one 96-register read
  at 9600 baud is 242.9 ms). Target: at most 1.15 x the wire time;
- **safety off latency**: from `send_command(off)` at a random moment of the
  polling to the first byte of the off request on the wire. Target: within
  one frame time (the longest exchange on the bus, the socket-block read,
  which may be in flight) plus 20 ms.

The largest configuration at the highest baud (16 boards at 115200 baud:
the shortest frames, where the master's own delays weigh most) is measured
twice, side by side: on the quiet box, and `loaded`, with one CPU burner
process per core running flat out. The bridge runs with
`realtime_priority` (default 10: its bus thread SCHED_FIFO, as a shed's
service unit allows with `LimitRTPRIO=`), and the simulated bus process at
the same priority, as the boards are hardware that no process of the box
can slow down; where the box refuses it, the result says so (`realtime`,
`bus_realtime`). With `loop_busy_ms` the loaded run also
keeps the bridge's caller's event loop (the controller's, in a shed) busy
with CPU work in slices that long: the bus thread then waits for the
interpreter lock at every wake-up, which is what a process of its own
would avoid. The target holds for quiet and loaded.

`run()` returns `{"name", "figure", "baseline", "ratio", "unit", "target",
"met", "configs": [...], "loaded": {...}}`; the headline is the loaded run,
the quiet configurations are in `configs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from controller.clock import RealClock
from firmware_bridge.messages import CmdAck, DeviceMessage, PortCommand
from firmware_bridge.modbus_bridge import ModbusBridge, ModbusBusSettings
from firmware_bridge.modbus_codec import Request
from firmware_bridge.modbus_registers import card_read, socket_reads
from simulators.modbus_board import ModbusSimBoard
from simulators.modbus_bus import SimModbusBus

CYCLE_TARGET = 1.15
OFF_MARGIN_S = 0.020


# --------------------------------------------------------------------------- the bus process


def serve_bus(n_boards: int, sockets: int, baud: int, seed: int, priority: int = 0) -> None:
    """In the bus process: print the tty path, run until stdin ends, print the bus's log."""
    realtime = False
    if priority:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
            realtime = True
        except (OSError, AttributeError):
            pass
    asyncio.run(_bus_main(n_boards, sockets, baud, seed, realtime))


async def _bus_main(n_boards: int, sockets: int, baud: int, seed: int, realtime: bool) -> None:
    clock = RealClock()
    rng = random.Random(seed)
    now = clock.now_ms()
    boards = [ModbusSimBoard(s, sockets, rng=rng, start_ms=now) for s in range(1, n_boards + 1)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), stop.set)
    try:
        async with SimModbusBus(boards, clock, baud=baud, log_size=1_000_000) as bus:
            print(bus.device, flush=True)
            await stop.wait()
            log = {
                "requests": [(r.t, r.slave, r.function, r.address) for r in bus.requests],
                "counts": dict(bus.counts),
                "realtime": realtime,
            }
    finally:
        loop.remove_reader(sys.stdin.fileno())
    print(json.dumps(log), flush=True)


class _BusProcess:
    """The simulated bus in a process of its own; `log()` stops it and returns what it saw."""

    def __init__(self, n_boards: int, sockets: int, baud: int, seed: int, priority: int) -> None:
        args = f"{n_boards}, {sockets}, {baud}, {seed}, {priority}"
        code = f"from bench.modbus_poll import serve_bus; serve_bus({args})"
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        self.device = self._proc.stdout.readline().strip()
        if not self.device:
            self.close()
            raise RuntimeError("the simulated bus did not start")

    def log(self) -> tuple[list[tuple[float, int, int, int]], dict[str, int], bool]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.close()  # end of input: the bus stops and reports
        out = json.loads(self._proc.stdout.readline())
        return [tuple(r) for r in out["requests"]], out["counts"], bool(out["realtime"])

    def close(self) -> None:
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


@contextlib.contextmanager
def _burners(n: int) -> Iterator[int]:
    """`n` processes keeping every core busy while the body runs."""
    burn = "while True: sum(range(20_000))"
    procs = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(n)]
    try:
        yield n
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


@contextlib.asynccontextmanager
async def _busy_loop(busy_ms: float) -> AsyncIterator[None]:
    """Keep the running event loop busy: CPU slices of `busy_ms`, yielding between them."""

    async def hog() -> None:
        while True:
            until = time.perf_counter() + busy_ms / 1000
            while time.perf_counter() < until:
                sum(range(200))
            await asyncio.sleep(0)

    task = asyncio.create_task(hog(), name="bench-busy-loop")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --------------------------------------------------------------------------- one measurement


async def _measure(
    n_boards: int,
    baud: int,
    sockets: int,
    cycles: int,
    off_samples: int,
    seed: int,
    priority: int,
    loop_busy_ms: float = 0.0,
) -> dict[str, Any]:
    clock = RealClock()
    rng = random.Random(seed + 1)
    acks: dict[str, asyncio.Future[CmdAck]] = {}

    def sink(msg: DeviceMessage) -> None:
        if isinstance(msg, CmdAck) and msg.id in acks and not acks[msg.id].done():
            acks[msg.id].set_result(msg)

    layout = {
        s: (f"b{s}", tuple(range((s - 1) * sockets + 1, s * sockets + 1)))
        for s in range(1, n_boards + 1)
    }
    bus = _BusProcess(n_boards, sockets, baud, seed, priority)
    sent: list[tuple[float, int, int, int]] = []  # (t0, port, slave, address) of each off
    try:
        # A pty cannot carry parity: 8N2 has the same 11 bits a character as 8E1.
        settings = ModbusBusSettings(
            bus.device,
            baud=baud,
            parity="N",
            stopbits=2,
            boards=layout,
            poll_interval_s=0,
            realtime_priority=priority,
        )
        timing = settings.timing
        busy = _busy_loop(loop_busy_ms) if loop_busy_ms > 0 else contextlib.nullcontext()
        async with ModbusBridge(settings, clock, sink) as bridge, busy:
            async with asyncio.timeout(60 + 10 * n_boards):
                await bridge.wait_cycles(2)  # the first cycle also reads every info block
                await bridge.wait_cycles(cycles)
            measured = list(bridge.recent_cycles)[-cycles:]
            longest = max(
                timing.exchange_s(len(Request.read_input(1, a, c).frame()), 5 + 2 * c)
                for _, a, c in socket_reads(sockets)
            )
            for i in range(off_samples):
                await asyncio.sleep(rng.uniform(0.0, 2 * longest))
                port = rng.choice(settings.ports)
                cmd = PortCommand(port, f"off-{i}", "off")
                acks[cmd.id] = asyncio.get_running_loop().create_future()
                slave, k = divmod(port - 1, sockets)
                t0 = time.monotonic()
                bridge.send_command(cmd)
                sent.append((t0, port, slave + 1, 2000 + 4 * k))
                async with asyncio.timeout(10):
                    await acks[cmd.id]
            realtime = bridge.realtime
        requests, bus_counts, bus_realtime = bus.log()
    finally:
        bus.close()
    latencies = []
    for t0, port, slave, address in sent:
        t = next((r[0] for r in requests if r[0] >= t0 and r[1:] == (slave, 6, address)), None)
        if t is None:
            raise RuntimeError(f"the off of port {port} never reached the bus")
        latencies.append(t - t0)
    cycle_s = statistics.fmean(c.duration_s for c in measured)
    wire_s = statistics.fmean(c.wire_s for c in measured)
    _, card_count = card_read(sockets)
    per_board = sum(timing.exchange_s(8, 5 + 2 * c) for _, _, c in socket_reads(sockets))
    per_board += timing.exchange_s(8, 5 + 2 * card_count)
    ratios = [c.duration_s / c.wire_s for c in measured]
    off_budget = longest + OFF_MARGIN_S
    return {
        "boards": n_boards,
        "sockets_per_board": sockets,
        "baud": baud,
        "cycle_ms": round(cycle_s * 1000, 2),
        "wire_ms": round(wire_s * 1000, 2),
        "wire_ms_formula": round(n_boards * per_board * 1000, 2),
        "ratio": round(cycle_s / wire_s, 4),
        "worst_cycle_ratio": round(max(ratios), 4),
        "cycles": len(measured),
        "exchanges_per_cycle": measured[-1].exchanges,
        "off_ms_max": round(max(latencies) * 1000, 2),
        "off_ms_mean": round(statistics.fmean(latencies) * 1000, 2),
        "off_budget_ms": round(off_budget * 1000, 2),
        "met": cycle_s / wire_s <= CYCLE_TARGET and max(latencies) <= off_budget,
        "bus": bus_counts,
        "realtime": realtime,
        "bus_realtime": bus_realtime,
    }


async def _run_all(
    boards: Sequence[int],
    bauds: Sequence[int],
    sockets: int,
    cycles: int,
    off_samples: int,
    seed: int,
    burners: int,
    loop_busy_ms: float,
    priority: int,
) -> dict[str, Any]:
    configs = []
    for baud in bauds:
        for n in boards:
            configs.append(await _measure(n, baud, sockets, cycles, off_samples, seed, priority))
    quiet = max(configs, key=lambda c: (c["boards"], c["baud"]))
    loaded: dict[str, Any] | None = None
    if burners > 0:
        with _burners(burners):
            loaded = await _measure(
                quiet["boards"],
                quiet["baud"],
                sockets,
                cycles,
                off_samples,
                seed,
                priority,
                loop_busy_ms,
            )
        loaded.update(burners=burners, loop_busy_ms=loop_busy_ms)
    head = loaded or quiet
    return {
        "name": "modbus_poll",
        "figure": head["cycle_ms"],
        "baseline": head["wire_ms"],
        "ratio": head["ratio"],
        "unit": "ms",
        "target": (
            f"cycle <= {CYCLE_TARGET} x wire time of the same frames, quiet and loaded; "
            f"off on the wire within one exchange + {OFF_MARGIN_S * 1000:.0f} ms"
        ),
        "met": all(c["met"] for c in configs) and (loaded is None or loaded["met"]),
        "headline": f"{head['boards']} boards x {head['sockets_per_board']} sockets "
        f"at {head['baud']} baud" + (", loaded" if loaded else ""),
        "quiet_ratio": quiet["ratio"],
        "loaded_ratio": loaded["ratio"] if loaded else None,
        "worst_ratio": max(c["ratio"] for c in [*configs, *([loaded] if loaded else [])]),
        "realtime_priority": priority,
        "load_average": list(os.getloadavg()),
        "configs": configs,
        "loaded": loaded,
    }


def run(
    *,
    boards: Sequence[int] = (1, 4, 16),
    bauds: Sequence[int] = (9600, 115200),
    sockets: int = 12,
    cycles: int = 3,
    off_samples: int = 5,
    seed: int = 7,
    burners: int | None = None,
    loop_busy_ms: float = 0.0,
    realtime_priority: int = 10,
) -> dict[str, Any]:
    """Measure every (boards, baud) configuration, then the largest loaded; see the
    module docstring. `burners`: CPU burner processes (None: one per core; 0: no
    loaded run)."""
    if cycles < 1 or off_samples < 1:
        raise ValueError("need at least one cycle and one off sample")
    if burners is None:
        burners = os.cpu_count() or 1
    if burners < 0 or loop_busy_ms < 0:
        raise ValueError("burners and loop_busy_ms must not be negative")
    if not 0 <= realtime_priority <= 99:
        raise ValueError("realtime_priority must be 0..99")
    return asyncio.run(
        _run_all(
            boards,
            bauds,
            sockets,
            cycles,
            off_samples,
            seed,
            burners,
            loop_busy_ms,
            realtime_priority,
        )
    )


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
