"""A simulated RS-485 bus: several `ModbusSimBoard`s behind one pseudo-terminal.

The bridge opens the pty's tty path (`bus.device`) like a USB adapter. The
bus decodes each request with pymodbus (`FramerRTU`, server-side PDUs), lets
the addressed board answer, and writes the answer back as a real wire would
deliver it:

- every frame takes its wire time at the configured baud: `bits_per_char`
  (11 in 8E1, 8O1 and 8N2) per character, and 3.5 characters of silence
  after it. The answer starts 3.5 characters after the request's last
  character (plus the board's `turnaround_s`), and arrives in pieces as the
  characters would, so a master sees the first byte early and the last one
  when the frame is over on the wire. One bus does one exchange at a time:
  it is the bottleneck it is in a real shed;
- a request that starts while an answer is still on the wire, or less than
  3.5 characters after it, is counted (`gap_violations`); an answer still
  pending when a new request comes is lost in the collision (`collisions`);
- bytes that never make a sound frame are dropped after 3.5 characters of
  silence, as a slave's receiver does (`bad_requests`). A request to a slave
  id nobody has goes unanswered.

Fault injection per slave (`set_fault`): `silent` (a dead board: no answer,
nothing done), `bad_crc` (the answer's CRC is corrupted), `truncate` (only
the first half of the answer comes), `wrong_slave` (the answer carries
another slave id), `slow` (the answer comes `delay_s` late), `exception`
(the board refuses with exception `code`). Each for the next `count`
answers, or until cleared. A reboot is `bus.board(slave).reboot(now_ms)`.

Board time comes from the injected clock (`controller.clock`), so sessions
can run in simulated time; the wire is real time by nature.

`link`: a path the bus makes a symlink to its tty while it runs, so a
controller in another process can be configured with a fixed `device`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterResponse,
)

from simulators.modbus_board import ILLEGAL_FUNCTION, ModbusSimBoard
from simulators.modbus_pty import PtyPort, make_link, remove_link

Fault = Literal["silent", "bad_crc", "truncate", "wrong_slave", "slow", "exception"]
FAULTS: frozenset[str] = frozenset(
    ("silent", "bad_crc", "truncate", "wrong_slave", "slow", "exception")
)
_GAP_CHARS = 3.5
_CHUNK_S = 0.010  # deliver an answer in pieces of about this much wire time
_SPIN_S = 0.0015


class Clock(Protocol):
    def now_ms(self) -> int: ...


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """A request as it reached the bus: when its first byte came (monotonic s) and what it asked."""

    t: float
    slave: int
    function: int
    address: int
    values: tuple[int, ...]  # written values; for reads, (count,)
    frame: bytes  # the request as it came, CRC included


@dataclass(slots=True)
class _FaultPlan:
    kind: Fault
    remaining: int | None
    delay_s: float
    code: int


class SimModbusBus:
    """Boards on one simulated line. `async with bus:` or `await start()` / `await stop()`."""

    def __init__(
        self,
        boards: Iterable[ModbusSimBoard],
        clock: Clock,
        *,
        baud: int = 9600,
        bits_per_char: int = 11,
        turnaround_s: float = 0.0,
        log_size: int = 10_000,
        link: str | None = None,
    ) -> None:
        self._boards = list(boards)
        slaves = [b.slave for b in self._boards]
        if len(set(slaves)) != len(slaves):
            raise ValueError("two boards with the same slave id")
        self.clock = clock
        self.baud = baud
        self.char_s = bits_per_char / baud
        self.gap_s = _GAP_CHARS * self.char_s
        self.turnaround_s = turnaround_s
        self.link = link  # a symlink to the tty, for a config that names a fixed device path
        self.requests: deque[RequestRecord] = deque(maxlen=log_size)
        self.counts: dict[str, int] = dict.fromkeys(
            (
                "requests",
                "answers",
                "unanswered",
                "bad_requests",
                "gap_violations",
                "collisions",
                "faults",
            ),
            0,
        )
        self._faults: dict[int, _FaultPlan] = {}
        self._framer = FramerRTU(DecodePDU(is_server=True))
        self._pty: PtyPort | None = None
        self._rx = bytearray()
        self._rx_first = 0.0
        self._rx_last = 0.0
        self._idle_at = 0.0  # monotonic time the wire is silent again (answer end + gap)
        self._answer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def device(self) -> str:
        """The tty path a master opens (like /dev/ttyUSB0)."""
        if self._pty is None:
            raise RuntimeError("bus not started")
        return self._pty.path

    async def start(self) -> None:
        if self._pty is not None:
            raise RuntimeError("bus already started")
        self._pty = PtyPort.open()
        if self.link is not None:
            try:
                make_link(self.link, self._pty.path)
            except OSError:
                self._pty.close()
                self._pty = None
                raise
        asyncio.get_running_loop().add_reader(self._pty.master_fd, self._on_readable)

    async def stop(self) -> None:
        pty, self._pty = self._pty, None
        if pty is None:
            return
        asyncio.get_running_loop().remove_reader(pty.master_fd)
        answer, self._answer = self._answer, None
        if answer is not None:
            answer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await answer
        if self.link is not None:
            remove_link(self.link)
        pty.close()

    async def __aenter__(self) -> SimModbusBus:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ boards and faults

    @property
    def boards(self) -> list[ModbusSimBoard]:
        return list(self._boards)

    def board(self, slave: int) -> ModbusSimBoard:
        for b in self._boards:
            if b.slave == slave:
                return b
        raise KeyError(f"no board at slave id {slave}")

    def set_fault(
        self,
        slave: int,
        kind: Fault,
        *,
        count: int | None = None,
        delay_s: float = 0.0,
        code: int = 4,
    ) -> None:
        """Make the board at `slave` misbehave for its next `count` answers (None: for ever)."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}")
        self._faults[slave] = _FaultPlan(kind, count, delay_s, code)

    def clear_fault(self, slave: int) -> None:
        self._faults.pop(slave, None)

    def wire_s(self, n_bytes: int) -> float:
        return n_bytes * self.char_s

    # ------------------------------------------------------------------ receiving

    def _on_readable(self) -> None:
        assert self._pty is not None
        try:
            data = os.read(self._pty.master_fd, 4096)
        except OSError:  # nobody has the tty open: nothing on the wire
            return
        now = time.monotonic()
        if self._rx and now - self._rx_last > self.gap_s + 0.002:
            self.counts["bad_requests"] += 1  # silence ended a frame that never became one
            self._rx.clear()
        if not self._rx:
            self._rx_first = now
        self._rx += data
        self._rx_last = now
        self._parse()

    def _parse(self) -> None:
        used, dev_id, _tid, pdu_bytes = self._framer.decode(bytes(self._rx))
        if not used:
            return
        started = self._rx_first
        raw = bytes(self._rx[:used])
        del self._rx[:used]
        if self._rx:
            self._rx_first = self._rx_last
        if not pdu_bytes:
            self.counts["bad_requests"] += 1
            return
        request = self._framer.decoder.decode(pdu_bytes)
        if request is None:
            self.counts["bad_requests"] += 1
            return
        request.dev_id = dev_id
        self._received(request, started, raw)

    def _received(self, request: ModbusPDU, started: float, frame: bytes) -> None:
        self.counts["requests"] += 1
        n_bytes = len(frame)
        values = tuple(request.registers) if request.function_code in (6, 16) else (request.count,)
        self.requests.append(
            RequestRecord(
                started, request.dev_id, request.function_code, request.address, values, frame
            )
        )
        if started < self._idle_at - 1e-4:
            self.counts["gap_violations"] += 1
        if self._answer is not None and not self._answer.done():
            self.counts["collisions"] += 1
            self._answer.cancel()
        board = next((b for b in self._boards if b.slave == request.dev_id), None)
        if board is None:
            self.counts["unanswered"] += 1
            return
        request_end = started + self.wire_s(n_bytes)
        self._idle_at = request_end + self.gap_s
        answer, delay = self._answer_frame(board, request)
        if answer is None:
            self.counts["unanswered"] += 1
            return
        start = request_end + self.gap_s + self.turnaround_s + delay
        self._idle_at = start + self.wire_s(len(answer)) + self.gap_s
        self._answer = asyncio.create_task(self._send(answer, start), name="modbus-sim-answer")

    # ------------------------------------------------------------------ answering

    def _answer_frame(
        self, board: ModbusSimBoard, request: ModbusPDU
    ) -> tuple[bytes | None, float]:
        plan = self._faults.get(board.slave)
        if plan is not None:
            self.counts["faults"] += 1
            if plan.remaining is not None:
                plan.remaining -= 1
                if plan.remaining <= 0:
                    del self._faults[board.slave]
            if plan.kind == "silent":
                return None, 0.0
            if plan.kind == "exception":
                refusal = ExceptionResponse(request.function_code, plan.code, board.slave)
                return self._framer.buildFrame(refusal), 0.0
        response = self._execute(board, request)
        response.dev_id = board.slave
        if plan is None:
            return self._framer.buildFrame(response), 0.0
        if plan.kind == "wrong_slave":
            response.dev_id = board.slave % 247 + 1
        frame = self._framer.buildFrame(response)
        if plan.kind == "bad_crc":
            frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
        elif plan.kind == "truncate":
            frame = frame[: len(frame) // 2]
        return frame, plan.delay_s if plan.kind == "slow" else 0.0

    def _execute(self, board: ModbusSimBoard, request: ModbusPDU) -> ModbusPDU:
        now = self.clock.now_ms()
        fc = request.function_code
        if fc in (3, 4):
            read = board.read_input if fc == 4 else board.read_holding
            regs = read(request.address, request.count, now)
            if isinstance(regs, int):
                return ExceptionResponse(fc, regs)
            cls = ReadInputRegistersResponse if fc == 4 else ReadHoldingRegistersResponse
            return cls(registers=regs)
        if fc in (6, 16):
            error = board.write(request.address, list(request.registers), now)
            if error is not None:
                return ExceptionResponse(fc, error)
            if fc == 6:
                return WriteSingleRegisterResponse(
                    address=request.address, registers=list(request.registers)
                )
            return WriteMultipleRegistersResponse(address=request.address, count=request.count)
        return ExceptionResponse(fc, ILLEGAL_FUNCTION)

    async def _send(self, frame: bytes, start: float) -> None:
        """Write `frame` as the wire delivers it: piece by piece, the last at its end time."""
        pty = self._pty
        if pty is None:
            return
        chunk = max(16, int(_CHUNK_S / self.char_s))
        sent = 0
        while sent < len(frame):
            n = min(chunk, len(frame) - sent)
            due = start + self.wire_s(sent + n)
            if sent + n == len(frame):
                await _sleep_until(due)
            else:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            try:
                os.write(pty.master_fd, frame[sent : sent + n])
            except OSError:  # the master closed the port
                return
            sent += n
        self.counts["answers"] += 1


async def _sleep_until(deadline: float) -> None:
    """Sleep to `deadline` (monotonic) without the event loop's 1 ms overshoot (spin the end)."""
    remaining = deadline - time.monotonic()
    if remaining > _SPIN_S:
        await asyncio.sleep(remaining - _SPIN_S + 0.0005)
    while time.monotonic() < deadline:
        pass
