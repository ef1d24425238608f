"""One RS-485 serial port, opened with pyserial and read by an asyncio event loop.

The port may be opened in one thread (so that bad settings raise at once)
and read by the event loop of another, the bus master's own (`watch()`).

I/O only: bytes out, bytes in with their arrival time. Framing is
`modbus_codec`'s, scheduling the bridge's.

Line settings are checked after opening. A Linux pseudo-terminal has no
parity: depending on the kernel, setting even or odd parity fails with EINVAL
or is silently ignored. Either way the bridge refuses to run a line whose
settings did not take (`ModbusConfigError("line_settings")`) rather than
talk 8N1 to boards that expect 8E1. A simulated bus on a pty is configured
as 8N2 (`parity = "N"`, `stopbits = 2`), which also takes 11 bits a character,
so its wire timing is that of 8E1.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import serial

try:
    import termios
except ImportError:  # pragma: no cover - not POSIX: settings cannot be checked
    termios = None  # type: ignore[assignment]


class ModbusConfigError(ValueError):
    """A bus that cannot run as configured. `code` is stable; `str()` says what to change."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class LineError(Exception):
    """The serial port failed (cannot open, unplugged, read or write error)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class SerialLine:
    """A serial port in raw, non-blocking mode. `open()`, then `write()` and `wait_data()`."""

    def __init__(self, device: str, baud: int, parity: str, stopbits: int) -> None:
        self.device = device
        self.baud = baud
        self.parity = parity
        self.stopbits = stopbits
        self.buffer = bytearray()
        self.first_byte_at: float | None = None  # monotonic time the buffer's first byte came
        self.last_byte_at: float | None = None
        self._serial: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop reading the port
        self._data = asyncio.Event()
        self._error: LineError | None = None

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def open(self, *, watch: bool = True) -> None:
        """Open and configure the port. Raises LineError, or ModbusConfigError for bad settings.

        With `watch` the running event loop reads it at once; else call `watch()`
        from the loop that is to read it.
        """
        if self._serial is not None:
            return
        try:
            port = serial.Serial(
                port=self.device,
                baudrate=self.baud,
                bytesize=serial.EIGHTBITS,
                parity=self.parity,
                stopbits=self.stopbits,
                timeout=0,
                write_timeout=0,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as err:
            if "configure port" in str(err) and self.parity != "N":
                raise _settings_error(self, str(err)) from err
            raise LineError("open_failed", f"{self.device}: {err}") from err
        try:
            self._check_settings(port)
        except ModbusConfigError:
            port.close()
            raise
        self._serial = port
        self._error = None
        self.clear()
        if watch:
            self.watch()

    def watch(self) -> None:
        """Let the running event loop read the open port (once; it is that loop's from now on)."""
        if self._serial is None or self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._data = asyncio.Event()
        self._loop.add_reader(self._serial.fileno(), self._on_readable)

    def _check_settings(self, port: Any) -> None:
        if termios is None:
            return
        try:
            cflag = termios.tcgetattr(port.fileno())[2]
        except termios.error as err:
            raise LineError("open_failed", f"{self.device}: {err}") from err
        parity = "N"
        if cflag & termios.PARENB:
            parity = "O" if cflag & termios.PARODD else "E"
        stopbits = 2 if cflag & termios.CSTOPB else 1
        if (parity, stopbits) != (self.parity, self.stopbits):
            raise _settings_error(self, f"the port runs 8{parity}{stopbits}")

    def close(self) -> None:
        port, self._serial = self._serial, None
        loop, self._loop = self._loop, None
        if port is None:
            return
        if loop is not None:
            with contextlib.suppress(Exception):
                loop.remove_reader(port.fileno())
        with contextlib.suppress(Exception):
            port.close()
        self._data.set()  # wake a waiter: it sees the line closed

    def clear(self) -> int:
        """Forget buffered input; return how many bytes that was."""
        n = len(self.buffer)
        self.buffer.clear()
        self.first_byte_at = self.last_byte_at = None
        return n

    def consume(self, n: int) -> None:
        del self.buffer[:n]
        if not self.buffer:
            self.first_byte_at = None

    def write(self, frame: bytes) -> None:
        self._raise_if_failed()
        try:
            written = self._serial.write(frame)
        except (serial.SerialException, OSError) as err:
            raise self._fail("write_failed", err) from err
        if written != len(frame):
            raise self._fail("write_failed", f"{written} of {len(frame)} bytes written")

    async def wait_data(self, timeout_s: float) -> None:
        """Wait until bytes arrive or `timeout_s` passes. Raises LineError if the port failed."""
        self._raise_if_failed()
        self._data.clear()
        if timeout_s > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._data.wait()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
        if self._serial is None:
            raise LineError("closed", f"{self.device} is not open")

    def _fail(self, code: str, err: object) -> LineError:
        self._error = LineError(code, f"{self.device}: {err}")
        return self._error

    def _on_readable(self) -> None:
        try:
            data = self._serial.read(4096)
        except (serial.SerialException, OSError) as err:
            self._fail("read_failed", err)
            loop, self._loop = self._loop, None
            if loop is not None:
                with contextlib.suppress(Exception):
                    loop.remove_reader(self._serial.fileno())
            self._data.set()
            return
        if not data:
            return
        now = time.monotonic()
        if not self.buffer:
            self.first_byte_at = now
        self.buffer += data
        self.last_byte_at = now
        self._data.set()


def _settings_error(line: SerialLine, why: str) -> ModbusConfigError:
    return ModbusConfigError(
        "line_settings",
        f"{line.device} cannot run 8{line.parity}{line.stopbits} ({why}). A pseudo-terminal "
        "has no parity: configure a simulated bus as parity = 'N', stopbits = 2 "
        "(8N2, 11 bits a character like 8E1).",
    )
