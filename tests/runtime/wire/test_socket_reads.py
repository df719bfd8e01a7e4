"""Reads that wait for readability after a short read (runtime/socket_reads.py)."""

from __future__ import annotations

import socket

import trio
import trio.testing

from iii_trio.runtime.wire.socket_io import SocketReader


async def test_socket_reads_deliver_every_byte_then_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    left, right = socket.socketpair()
    a = trio.SocketStream(trio.socket.from_stdlib_socket(left))
    b = trio.SocketStream(trio.socket.from_stdlib_socket(right))
    reader = SocketReader(a, 4)
    await b.send_all(b"abcdef")
    assert await reader.receive_some() == b"abcd"  # a full read: read again at once
    assert await reader.receive_some() == b"ef"  # short: the next read waits first

    async def later() -> None:
        await trio.sleep(0.01)
        await b.send_all(b"gh")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(later)
        with trio.fail_after(5):
            assert await reader.receive_some() == b"gh"
    await b.aclose()
    assert await reader.receive_some() == b""
    await a.aclose()


async def test_a_stream_closed_while_waiting_reads_as_the_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    left, right = socket.socketpair()
    a = trio.SocketStream(trio.socket.from_stdlib_socket(left))
    reader = SocketReader(a, 4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.aclose)
        with trio.fail_after(5):
            assert await reader.receive_some() == b""
    right.close()


async def test_other_streams_read_the_usual_way(autojump_clock: trio.testing.MockClock) -> None:
    a, b = trio.testing.memory_stream_pair()
    reader = SocketReader(a, 64)
    await b.send_all(b"xyz")
    assert await reader.receive_some() == b"xyz"
    await b.aclose()
    assert await reader.receive_some() == b""
