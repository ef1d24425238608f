"""BufferedSocket over a real socket pair: what paho reads, and what stays in the kernel."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from firmware_bridge.buffered_socket import BufferedSocket


@pytest.fixture
def pair() -> Iterator[tuple[BufferedSocket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    try:
        yield BufferedSocket(ours, chunk=64), theirs
    finally:
        ours.close()
        theirs.close()


def test_small_reads_are_served_from_one_kernel_read(
    pair: tuple[BufferedSocket, socket.socket],
) -> None:
    sock, peer = pair
    peer.sendall(b"\x30\x05hello\x30\x03abc")
    assert sock.recv(1) == b"\x30"
    assert sock.pending() == 11  # the whole write came in with the first read
    assert [sock.recv(1), sock.recv(5)] == [b"\x05", b"hello"]
    assert [sock.recv(1), sock.recv(1), sock.recv(3)] == [b"\x30", b"\x03", b"abc"]
    assert sock.pending() == 0
    with pytest.raises(BlockingIOError):  # nothing held, nothing in the kernel
        sock.recv(1)


def test_a_read_gets_at_most_what_is_held(pair: tuple[BufferedSocket, socket.socket]) -> None:
    sock, peer = pair
    peer.sendall(b"abc")
    assert sock.recv(1) == b"a"
    assert sock.recv(100) == b"bc"  # a packet split across reads: paho asks again
    peer.sendall(b"def")
    assert sock.recv(100) == b"def"


def test_no_more_than_a_chunk_leaves_the_kernel(
    pair: tuple[BufferedSocket, socket.socket],
) -> None:
    sock, peer = pair
    peer.sendall(bytes(range(200)))
    assert sock.recv(1) == b"\x00"
    assert sock.pending() == 63  # chunk=64: the other 136 bytes wait in the kernel
    assert sock.recv(63) == bytes(range(1, 64))
    assert sock.pending() == 0  # the turn ends: the reader yields to the event loop
    assert sock.recv(1) == bytes([64])  # the next turn takes the next chunk
    assert sock.pending() == 63


def test_one_chunk_a_turn(pair: tuple[BufferedSocket, socket.socket]) -> None:
    sock, peer = pair
    peer.sendall(bytes(range(100)))
    assert sock.recv(60) == bytes(range(60))  # from this turn's chunk of 64
    assert sock.recv(10) == bytes(range(60, 64))  # a packet split by the chunk's end
    assert sock.recv(6) == bytes(range(64, 70))  # its rest: what paho asks for, no new chunk
    assert sock.pending() == 0  # so the reader yields, however much the kernel holds
    assert sock.recv(100) == bytes(range(70, 100))  # the next turn: a new chunk


def test_end_of_stream_comes_after_what_is_held(
    pair: tuple[BufferedSocket, socket.socket],
) -> None:
    sock, peer = pair
    peer.sendall(b"xyz")
    peer.shutdown(socket.SHUT_WR)
    assert sock.recv(2) == b"xy"
    assert sock.recv(2) == b"z"
    assert sock.recv(2) == b""  # the peer closed: paho takes b"" as a lost connection


def test_everything_else_goes_to_the_socket(pair: tuple[BufferedSocket, socket.socket]) -> None:
    sock, peer = pair
    assert sock.send(b"ping") == 4
    assert peer.recv(4) == b"ping"
    fileno = sock.fileno()
    assert fileno >= 0
    assert "pending=0" in repr(sock)
    sock.close()
    assert sock.fileno() == -1


def test_chunk_must_hold_a_byte() -> None:
    with socket.socket() as s, pytest.raises(ValueError, match="chunk"):
        BufferedSocket(s, chunk=0)
