"""A socket that paho reads from memory: one kernel read serves many MQTT packets.

paho reads each incoming packet with three or four `recv` calls (its first
byte, each byte of the remaining length, then the rest), and aiomqtt wakes the
event loop once per packet to do so. Telemetry is a stream of small packets,
so that is three system calls and an event-loop turn per sample, about as
much as the controller's own work on it.

`BufferedSocket` takes up to `chunk` bytes from the kernel when paho asks for
more than it holds, and serves paho's small reads from them. It reports what
it holds through `pending()`, as an `ssl.SSLSocket` does for its decrypted
bytes; paho and aiomqtt both keep reading while a socket has bytes pending, so
one wake-up of the event loop handles every packet of the chunk.

Back-pressure is unchanged: nothing is read from the kernel before paho asks,
so at most `chunk` bytes wait here; the rest stays in the kernel's buffer and
the broker's queue. Everything but `recv` and `pending` goes to the socket.
"""

from __future__ import annotations

import socket
from typing import Any

CHUNK = 16 * 1024  # about 100 telemetry packets: a few ms of work per wake-up


class BufferedSocket:
    __slots__ = ("_buf", "_chunk", "_pos", "_sock")

    def __init__(self, sock: socket.socket, chunk: int = CHUNK) -> None:
        if chunk < 1:
            raise ValueError("chunk must be at least 1 byte")
        self._sock = sock
        self._chunk = chunk
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        """Up to `bufsize` bytes: held ones first, else one read of up to `chunk` from the
        kernel. Raises what the socket raises (`BlockingIOError` when it has nothing);
        returns b"" when the peer has closed the connection."""
        pos = self._pos
        if pos >= len(self._buf):
            data = self._sock.recv(self._chunk)
            if not data:
                return b""
            self._buf, pos = data, 0
        end = pos + bufsize
        self._pos = end
        return self._buf[pos:end]

    def pending(self) -> int:
        """Bytes read from the kernel that paho has not taken yet."""
        return max(0, len(self._buf) - self._pos)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def __repr__(self) -> str:
        return f"BufferedSocket({self._sock!r}, pending={self.pending()})"
