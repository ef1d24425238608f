"""The bridge against a board we did not write: pymodbus's own serial server and the register map.

The slave is `pymodbus.server.ModbusSerialServer` with a `SimDevice` (its
live-register simulator; the old datastore copies its data at start). Its
`action` callback is the whole "firmware": it applies the contract's
register map to the registers and nothing else of ours runs on that side.
Master and slave each open a tty path; a null modem joins them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from controller.clock import SimClock
from firmware_bridge.messages import BoardStatus, CmdAck, DeviceMessage, PortCommand, PortEvent
from firmware_bridge.messages import Telemetry as Sample
from firmware_bridge.modbus_bridge import ModbusBridge, ModbusBusSettings
from simulators.modbus_pty import NullModem
from tests.test_modbus_harness import FAST, T0, leak_check

SOCKETS = 4
PORTS = (21, 22, 23, 24)


@pytest.fixture(autouse=True)
async def _no_leaks() -> AsyncIterator[None]:
    async with leak_check():
        yield


class Firmware:
    """The register map of contract v1 as a pymodbus `SimDevice` action, written from the page."""

    def __init__(self) -> None:
        self.writes: list[tuple[int, int, list[int]]] = []
        self.pending: dict[int, int] = {}  # register changes the next access applies (a tap)

    def device(self, slave: int, uptime_s: int) -> SimDevice:
        sockets = []
        for k in range(SOCKETS):
            # status, 230.0 V, 0 A, 0 W, energy 1000*(k+1) Wh, 21.5 degC, no lease
            sockets += [0, 2300, 0, 0, 0, 1000 * (k + 1), 215, 0]
        return SimDevice(
            id=slave,
            simdata=[
                SimData(0, values=[1, SOCKETS, 207, 250, 0, uptime_s], datatype=DataType.REGISTERS),
                SimData(1000, values=sockets, datatype=DataType.REGISTERS),
                SimData(2000, values=[0, 0, 1100, 0] * SOCKETS, datatype=DataType.REGISTERS),
                SimData(3000, values=[slave], datatype=DataType.REGISTERS),
            ],
            action=self.action,
        )

    async def action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        for reg, value in self.pending.items():
            registers[reg - start_address] = value
        self.pending.clear()
        if set_values is None:
            return None
        values = [int(v) for v in set_values]
        self.writes.append((function_code, address, values))
        for i, value in enumerate(values):
            k, offset = divmod(address + i - 2000, 4)
            if not 0 <= k < SOCKETS:
                continue
            status = 1000 + 8 * k - start_address
            if offset == 0 and value == 1:  # on: the lease and limit are in the same write
                held = registers[2000 + 4 * k + 1 - start_address]
                lease = values[i + 1] if i + 1 < len(values) else held
                registers[status] |= 0x01
                registers[status + 7] = lease
            elif offset == 0 and value == 0:
                registers[status] &= ~0x01
                registers[status + 7] = 0
            elif offset == 1 and registers[status] & 0x01:
                registers[status + 7] = value  # renew
        return None


async def test_a_pymodbus_server_board_is_read_and_commanded() -> None:
    firmware = Firmware()
    msgs: list[DeviceMessage] = []
    changed = asyncio.Event()

    def sink(msg: DeviceMessage) -> None:
        msgs.append(msg)
        changed.set()

    async def until(check: object) -> None:
        async with asyncio.timeout(5):
            while not check():  # type: ignore[operator]
                changed.clear()
                await changed.wait()

    async with NullModem() as wire:
        server = ModbusSerialServer(
            firmware.device(5, uptime_s=600),
            port=wire.b,
            baudrate=115200,
            parity="N",
            stopbits=2,
        )
        await server.serve_forever(background=True)
        try:
            settings = ModbusBusSettings(
                wire.a, **{**FAST, "timeout_s": 0.2}, boards={5: ("tp", PORTS)}
            )
            async with ModbusBridge(settings, SimClock(T0), sink) as bridge:
                await until(lambda: sum(isinstance(m, Sample) for m in msgs) >= 2 * SOCKETS)
                bridge.send_command(PortCommand(22, "on", "on", lease_s=300, max_w=800))
                await until(lambda: any(isinstance(m, CmdAck) for m in msgs))
                await until(lambda: [m for m in msgs if isinstance(m, Sample) and m.relay])
                firmware.pending[2003 + 4 * 2] = 0xB2C3  # a card on socket 2's reader
                await until(lambda: any(isinstance(m, PortEvent) for m in msgs))
                await until(lambda: (6, 2011, [0]) in firmware.writes)
                firmware.pending[1000 + 8 * 1] = 0x01 | 0x02 | 0x04  # socket 1 trips
                await until(lambda: len([m for m in msgs if isinstance(m, PortEvent)]) == 2)
                bridge.send_command(PortCommand(22, "off", "off"))
                await until(lambda: len([m for m in msgs if isinstance(m, CmdAck)]) == 2)
                counts = bridge.counters()
        finally:
            await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus leaves it untyped
    assert msgs[0] == BoardStatus("tp", True, "2.07", PORTS, T0)
    first = [m for m in msgs if isinstance(m, Sample)][:SOCKETS]
    assert [(s.port, s.v, s.wh, s.temp_c, s.relay) for s in first] == [
        (21, 230.0, 1000, 21.5, False),
        (22, 230.0, 2000, 21.5, False),
        (23, 230.0, 3000, 21.5, False),
        (24, 230.0, 4000, 21.5, False),
    ]
    assert (16, 2004, [1, 300, 800]) in firmware.writes
    assert (6, 2004, [0]) in firmware.writes
    acks = [m for m in msgs if isinstance(m, CmdAck)]
    assert acks == [CmdAck(22, "on", True, True), CmdAck(22, "off", True, False)]
    events = [m for m in msgs if isinstance(m, PortEvent)]
    assert events == [
        PortEvent(23, T0, "card", card_uid="B2C3"),
        PortEvent(22, T0, "overcurrent"),
    ]
    assert counts["dropped"] == counts["timeouts"] == 0
