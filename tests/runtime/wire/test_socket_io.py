"""Raw socket I/O (runtime/wire/socket_io.py): reads that wait for readability after a short
read, and writes that never wait."""

from __future__ import annotations

import socket

import trio
import trio.testing

from iii_trio.runtime.wire.socket_io import SocketReader, socket_fd, try_write


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


async def test_a_stream_closed_while_waiting_reads_as_the_end() -> None:
    left, right = socket.socketpair()
    a = trio.SocketStream(trio.socket.from_stdlib_socket(left))
    reader = SocketReader(a, 4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.aclose)
        with trio.fail_after(5):
            assert await reader.receive_some() == b""
    right.close()


async def test_other_streams_read_the_usual_way() -> None:
    a, b = trio.testing.memory_stream_pair()
    reader = SocketReader(a, 64)
    await b.send_all(b"xyz")
    assert await reader.receive_some() == b"xyz"
    await b.aclose()
    assert await reader.receive_some() == b""


def socket_stream_pair() -> tuple[trio.SocketStream, socket.socket]:
    left, right = socket.socketpair()
    return trio.SocketStream(trio.socket.from_stdlib_socket(left)), right


async def test_a_write_that_cannot_wait_writes_what_the_socket_takes() -> None:
    stream, peer = socket_stream_pair()
    fd = socket_fd(stream)
    assert fd is not None
    assert try_write(fd, b"hello") == 5
    assert peer.recv(16) == b"hello"
    # Nobody reads: the socket's buffer fills, the last write is partial, then nothing goes.
    chunk = b"x" * 65536
    written = [try_write(fd, chunk) for _ in range(200)]
    assert written[-1] == 0
    assert 0 < sum(written) < 200 * len(chunk)
    await stream.aclose()
    peer.close()


async def test_a_write_to_a_broken_socket_writes_nothing() -> None:
    stream, peer = socket_stream_pair()
    peer.close()
    fd = socket_fd(stream)
    assert fd is not None
    assert try_write(fd, b"lost") == 0  # broken pipe: the caller's writer reports it
    await stream.aclose()


async def test_other_streams_have_no_descriptor_and_take_no_direct_write() -> None:
    a, _ = trio.testing.memory_stream_pair()
    assert socket_fd(a) is None
    assert try_write(None, b"data") == 0
