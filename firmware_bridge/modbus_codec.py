"""Modbus RTU frames for the bridge, built and checked with pymodbus. Pure: bytes in, values out.

pymodbus does the framing and the CRC (`FramerRTU`) and the PDUs
(`ReadInputRegistersRequest`, ...). This module adds what a bus master must
check on top: that an answer comes from the slave asked, for the function
asked, with the length asked. Everything else is a `Dropped` value with a
reason, counted by the bridge and never used:

| reason | what arrived |
|---|---|
| `bad_crc` | a frame whose CRC does not match (noise, a collision) |
| `wrong_length` | a frame cut short (known when its time is up), or the wrong register count |
| `wrong_slave` | a sound frame from another slave id |
| `mismatch` | a sound frame of another function, or a write echo that differs from the write |
| `bad_pdu` | a sound frame whose PDU pymodbus cannot decode |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
    WriteMultipleRegistersRequest,
    WriteSingleRegisterRequest,
)

READ_HOLDING = 3
READ_INPUT = 4
WRITE_SINGLE = 6
WRITE_MULTIPLE = 16

DropReason = Literal["bad_crc", "wrong_length", "wrong_slave", "mismatch", "bad_pdu"]

EXCEPTION_NAMES = {
    1: "illegal_function",
    2: "illegal_address",
    3: "illegal_value",
    4: "device_failure",
    5: "acknowledge",
    6: "device_busy",
}

_framer = FramerRTU(DecodePDU(is_server=False))


@dataclass(frozen=True, slots=True)
class Request:
    """One request to one slave. Reads carry `count`; writes carry `values`."""

    slave: int
    function: int
    address: int
    count: int = 0
    values: tuple[int, ...] = ()

    @classmethod
    def read_input(cls, slave: int, address: int, count: int) -> Request:
        return cls(slave, READ_INPUT, address, count=count)

    @classmethod
    def read_holding(cls, slave: int, address: int, count: int) -> Request:
        return cls(slave, READ_HOLDING, address, count=count)

    @classmethod
    def write_single(cls, slave: int, address: int, value: int) -> Request:
        return cls(slave, WRITE_SINGLE, address, count=1, values=(value,))

    @classmethod
    def write_multiple(cls, slave: int, address: int, values: tuple[int, ...]) -> Request:
        return cls(slave, WRITE_MULTIPLE, address, count=len(values), values=values)

    def pdu(self) -> ModbusPDU:
        if self.function == READ_INPUT:
            return ReadInputRegistersRequest(
                address=self.address, count=self.count, dev_id=self.slave
            )
        if self.function == READ_HOLDING:
            return ReadHoldingRegistersRequest(
                address=self.address, count=self.count, dev_id=self.slave
            )
        if self.function == WRITE_SINGLE:
            return WriteSingleRegisterRequest(
                address=self.address, registers=list(self.values), dev_id=self.slave
            )
        if self.function == WRITE_MULTIPLE:
            return WriteMultipleRegistersRequest(
                address=self.address, registers=list(self.values), dev_id=self.slave
            )
        raise ValueError(f"function code {self.function} is not used by this contract")

    def frame(self) -> bytes:
        """The request on the wire: slave id, PDU, CRC (pymodbus `FramerRTU`)."""
        if not 1 <= self.slave <= 247:
            raise ValueError("slave id must be in 1..247")
        if any(not 0 <= v <= 0xFFFF for v in self.values):
            raise ValueError("register values must be in 0..65535")
        return _framer.buildFrame(self.pdu())

    def response_length(self) -> int:
        """Bytes of a normal answer: id, function, data, CRC."""
        if self.function in (READ_INPUT, READ_HOLDING):
            return 5 + 2 * self.count
        return 8  # write echoes: address and value, or address and count

    @property
    def is_write(self) -> bool:
        return self.function in (WRITE_SINGLE, WRITE_MULTIPLE)


@dataclass(frozen=True, slots=True)
class Reply:
    """A sound answer. `registers` for reads; empty for writes."""

    registers: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ExceptionReply:
    """The slave refused the request (an error, not data)."""

    code: int

    @property
    def error(self) -> str:
        return EXCEPTION_NAMES.get(self.code, f"exception_{self.code:02x}")


@dataclass(frozen=True, slots=True)
class Dropped:
    reason: DropReason
    detail: str = ""


Outcome = Reply | ExceptionReply | Dropped


def parse_response(request: Request, data: bytes) -> tuple[int, Outcome | None]:
    """Look for the answer to `request` at the start of `data`.

    Returns (bytes used, outcome); outcome None means "not complete yet, read
    more" (then nothing is used). A `Dropped` with reason `wrong_slave` is not
    the answer: the caller counts it and keeps listening.
    """
    used, dev_id, _tid, pdu_bytes = _framer.decode(data)
    if not used:
        return 0, None
    if not pdu_bytes:
        return used, Dropped("bad_crc", data[:used].hex())
    if dev_id != request.slave:
        return used, Dropped("wrong_slave", f"slave {dev_id} answered, {request.slave} was asked")
    pdu = _framer.decoder.decode(pdu_bytes)
    if pdu is None:
        return used, Dropped("bad_pdu", pdu_bytes.hex())
    return used, _check(request, pdu)


def incomplete(data: bytes) -> Dropped:
    """What bytes that never became a whole frame are, once the answer's time is up."""
    return Dropped("wrong_length", f"{len(data)} bytes, not a whole frame: {data[:16].hex()}")


def _check(request: Request, pdu: ModbusPDU) -> Outcome:
    if isinstance(pdu, ExceptionResponse):
        if pdu.function_code & 0x7F != request.function:
            return Dropped("mismatch", f"exception for function {pdu.function_code & 0x7F}")
        return ExceptionReply(pdu.exception_code)
    if pdu.function_code != request.function:
        return Dropped("mismatch", f"function {pdu.function_code}, asked {request.function}")
    if not request.is_write:
        if len(pdu.registers) != request.count:
            return Dropped("wrong_length", f"{len(pdu.registers)} registers, asked {request.count}")
        return Reply(tuple(pdu.registers))
    if request.function == WRITE_SINGLE:
        echo_ok = pdu.address == request.address and list(pdu.registers) == list(request.values)
    else:
        echo_ok = pdu.address == request.address and pdu.count == request.count
    if not echo_ok:
        return Dropped("mismatch", "write echo differs from the write")
    return Reply()
