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

One chunk a turn: a chunk seldom ends on a packet boundary, and if paho's
read of the rest of that packet fetched a new chunk, a steady stream would
keep the reader busy for as long as it lasts, and stall the event loop (the
tick, the command sender) for seconds. So once a chunk is used up, the rest
of the packet is read from the kernel at the size paho asks for, `pending()`
says 0 and the reader yields; the next wake-up takes the next chunk. Bytes are
never held back while the reader yields.

Back-pressure is unchanged: nothing is read from the kernel before paho asks,
so at most `chunk` bytes wait here; the rest stays in the kernel's buffer and
the broker's queue. Everything but `recv` and `pending` goes to the socket.
"""

from __future__ import annotations

import socket
from typing import Any

CHUNK = 16 * 1024  # about 100 telemetry packets: a few ms of work per wake-up


class BufferedSocket:
    __slots__ = ("_buf", "_chunk", "_chunk_read", "_pos", "_sock")

    def __init__(self, sock: socket.socket, chunk: int = CHUNK) -> None:
        if chunk < 1:
            raise ValueError("chunk must be at least 1 byte")
        self._sock = sock
        self._chunk = chunk
        self._buf = b""
        self._pos = 0
        self._chunk_read = False  # this turn's chunk was taken from the kernel

    def recv(self, bufsize: int) -> bytes:
        """Up to `bufsize` bytes: held ones first, else from the kernel: a chunk at the
        start of a turn, only what was asked for after it. Raises what the socket raises
        (`BlockingIOError` when it has nothing); b"" when the peer has closed."""
        pos = self._pos
        if pos >= len(self._buf):
            if self._chunk_read:
                return self._sock.recv(bufsize)
            data = self._sock.recv(self._chunk)
            if not data:
                return b""
            self._buf, pos, self._chunk_read = data, 0, True
        end = pos + bufsize
        self._pos = end
        return self._buf[pos:end]

    def pending(self) -> int:
        """Bytes read from the kernel that paho has not taken yet. 0 ends the turn: the
        reader yields to the event loop, and the next `recv` may take a new chunk."""
        held = len(self._buf) - self._pos
        if held > 0:
            return held
        self._chunk_read = False
        return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def __repr__(self) -> str:
        return f"BufferedSocket({self._sock!r}, pending={self.pending()})"
