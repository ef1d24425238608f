"""Pseudo-terminals that stand in for RS-485 adapters, so serial code runs with no cable.

`PtyPort` is one pty pair: a master (and any serial library) opens `path`
like /dev/ttyUSB0, the simulator reads and writes `master_fd`. The tty side
is put in raw mode at once and kept open by us, so nothing is echoed before
the master configures it and reads never fail while nobody has it open.

`NullModem` joins two ports' tty paths back to back (like `socat pty pty`):
bytes written to one path come out of the other. It lets two programs that
both open a serial path (a Modbus master and a third-party slave) talk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from dataclasses import dataclass


@dataclass(slots=True)
class PtyPort:
    master_fd: int
    tty_fd: int
    path: str

    @classmethod
    def open(cls) -> PtyPort:
        master_fd, tty_fd = os.openpty()
        tty.setraw(tty_fd)
        os.set_blocking(master_fd, False)
        return cls(master_fd, tty_fd, os.ttyname(tty_fd))

    def close(self) -> None:
        for fd in (self.master_fd, self.tty_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def make_link(link: str, target: str) -> None:
    """Point the symlink `link` at `target`; an existing file that is not a symlink is kept."""
    if os.path.lexists(link) and not os.path.islink(link):
        raise FileExistsError(f"{link} exists and is not a symlink: not replaced")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(link)
    os.symlink(target, link)


def remove_link(link: str) -> None:
    if os.path.islink(link):
        os.unlink(link)


class NullModem:
    """Two tty paths, `a` and `b`, wired to each other. `async with NullModem() as link:`."""

    def __init__(self) -> None:
        self._ports: tuple[PtyPort, PtyPort] | None = None
        self.bytes_a_to_b = 0
        self.bytes_b_to_a = 0

    @property
    def a(self) -> str:
        return self._pair()[0].path

    @property
    def b(self) -> str:
        return self._pair()[1].path

    def _pair(self) -> tuple[PtyPort, PtyPort]:
        if self._ports is None:
            raise RuntimeError("null modem not started")
        return self._ports

    async def start(self) -> None:
        if self._ports is not None:
            raise RuntimeError("null modem already started")
        a, b = PtyPort.open(), PtyPort.open()
        self._ports = (a, b)
        loop = asyncio.get_running_loop()
        loop.add_reader(a.master_fd, self._relay, a, b, True)
        loop.add_reader(b.master_fd, self._relay, b, a, False)

    async def stop(self) -> None:
        ports, self._ports = self._ports, None
        if ports is None:
            return
        loop = asyncio.get_running_loop()
        for port in ports:
            loop.remove_reader(port.master_fd)
            port.close()

    async def __aenter__(self) -> NullModem:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    def _relay(self, src: PtyPort, dst: PtyPort, a_to_b: bool) -> None:
        try:
            data = os.read(src.master_fd, 4096)
            os.write(dst.master_fd, data)
        except OSError:
            return
        if a_to_b:
            self.bytes_a_to_b += len(data)
        else:
            self.bytes_b_to_a += len(data)
