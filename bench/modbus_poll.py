"""Bench: Modbus RTU poll-cycle time against the wire time of the same frames.

For each configuration (boards of `sockets` sockets on one bus, at a baud
rate) a simulated bus (`simulators.modbus_bus`, real wire timing on a pty)
is polled by the real `ModbusBridge` with its default settings, back to back
(`poll_interval_s = 0`). Two figures:

- **cycle time** against the theoretical wire time of the frames that cycle
  exchanged (characters at 11 bits, 3.5-character gaps; one 96-register read
  at 9600 baud is 242.9 ms). Target: at most 1.15 x the wire time;
- **safety off latency**: from `send_command(off)` at a random moment of the
  polling to the first byte of the off request on the wire. Target: within
  one frame time (the longest exchange on the bus, the socket-block read,
  which may be in flight) plus 20 ms.

`run()` returns `{"name", "figure", "baseline", "ratio", "unit", "target",
"met", "configs": [...]}`; the headline is the largest configuration at the
lowest baud, the other configurations are in `configs`.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
from collections.abc import Sequence
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


async def _measure(
    n_boards: int, baud: int, sockets: int, cycles: int, off_samples: int, seed: int
) -> dict[str, Any]:
    clock = RealClock()
    rng = random.Random(seed)
    now = clock.now_ms()
    boards = [ModbusSimBoard(s, sockets, rng=rng, start_ms=now) for s in range(1, n_boards + 1)]
    acks: dict[str, asyncio.Future[CmdAck]] = {}

    def sink(msg: DeviceMessage) -> None:
        if isinstance(msg, CmdAck) and msg.id in acks and not acks[msg.id].done():
            acks[msg.id].set_result(msg)

    layout = {
        s: (f"b{s}", tuple(range((s - 1) * sockets + 1, s * sockets + 1)))
        for s in range(1, n_boards + 1)
    }
    async with SimModbusBus(boards, clock, baud=baud) as bus:
        # A pty cannot carry parity: 8N2 has the same 11 bits a character as 8E1.
        settings = ModbusBusSettings(
            bus.device, baud=baud, parity="N", stopbits=2, boards=layout, poll_interval_s=0
        )
        timing = settings.timing
        async with ModbusBridge(settings, clock, sink) as bridge:
            async with asyncio.timeout(60 + 10 * n_boards):
                await bridge.wait_cycles(2)  # the first cycle also reads every info block
                await bridge.wait_cycles(cycles)
            measured = list(bridge.recent_cycles)[-cycles:]
            longest = max(
                timing.exchange_s(len(Request.read_input(1, a, c).frame()), 5 + 2 * c)
                for _, a, c in socket_reads(sockets)
            )
            latencies = []
            for i in range(off_samples):
                await asyncio.sleep(rng.uniform(0.0, 2 * longest))
                port = rng.choice(settings.ports)
                cmd = PortCommand(port, f"off-{i}", "off")
                acks[cmd.id] = asyncio.get_running_loop().create_future()
                seen = len(bus.requests)
                t0 = asyncio.get_running_loop().time()
                bridge.send_command(cmd)
                async with asyncio.timeout(10):
                    await acks[cmd.id]
                slave, k = divmod(port - 1, sockets)
                address = 2000 + 4 * k
                record = next(
                    (
                        r
                        for r in list(bus.requests)[seen:]
                        if (r.slave, r.function, r.address) == (slave + 1, 6, address)
                    ),
                    None,
                )
                if record is None:
                    raise RuntimeError(f"the off of port {port} never reached the bus")
                latencies.append(record.t - t0)
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
        "bus": dict(bus.counts),
    }


async def _run_all(
    boards: Sequence[int],
    bauds: Sequence[int],
    sockets: int,
    cycles: int,
    off_samples: int,
    seed: int,
) -> dict[str, Any]:
    configs = []
    for baud in bauds:
        for n in boards:
            configs.append(await _measure(n, baud, sockets, cycles, off_samples, seed))
    head = max(configs, key=lambda c: (c["boards"], -c["baud"]))
    return {
        "name": "modbus_poll",
        "figure": head["cycle_ms"],
        "baseline": head["wire_ms"],
        "ratio": head["ratio"],
        "unit": "ms",
        "target": (
            f"cycle <= {CYCLE_TARGET} x wire time of the same frames; "
            f"off on the wire within one exchange + {OFF_MARGIN_S * 1000:.0f} ms"
        ),
        "met": all(c["met"] for c in configs),
        "headline": f"{head['boards']} boards x {head['sockets_per_board']} sockets "
        f"at {head['baud']} baud",
        "worst_ratio": max(c["ratio"] for c in configs),
        "configs": configs,
    }


def run(
    *,
    boards: Sequence[int] = (1, 4, 16),
    bauds: Sequence[int] = (9600, 115200),
    sockets: int = 12,
    cycles: int = 3,
    off_samples: int = 5,
    seed: int = 7,
) -> dict[str, Any]:
    """Measure every (boards, baud) configuration; see the module docstring."""
    if cycles < 1 or off_samples < 1:
        raise ValueError("need at least one cycle and one off sample")
    return asyncio.run(_run_all(boards, bauds, sockets, cycles, off_samples, seed))


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
