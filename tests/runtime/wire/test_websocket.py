"""Both sides of an open WebSocket (runtime/wire/websocket.py) over a socket pair, with the
peer's frames written and read as raw bytes: messages, the closed state, pongs, the close
codes, and the server's write that never waits."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable, Iterator

import pytest
import trio
import trio.testing

from iii_trio.runtime.wire import frames
from iii_trio.runtime.wire.websocket import (
    ClientWebSocket,
    ConnectionClosed,
    MessageTooBig,
    ServerWebSocket,
    WebSocketClosed,
    close_frame,
    frame,
    text_frame,
)

Pair = Callable[[], tuple[trio.SocketStream, trio.SocketStream]]


@pytest.fixture
def socket_pair() -> Iterator[Pair]:
    """Connected socket streams (this side, the peer), closed after the test."""
    opened: list[socket.socket] = []

    def pair() -> tuple[trio.SocketStream, trio.SocketStream]:
        left, right = socket.socketpair()
        opened.extend((left, right))
        wrap = trio.socket.from_stdlib_socket
        return trio.SocketStream(wrap(left)), trio.SocketStream(wrap(right))

    yield pair
    for sock in opened:
        sock.close()


def masked(opcode: int, payload: bytes) -> bytes:
    return frames.masked_frame(opcode, payload)


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


def read_frame(data: bytes) -> tuple[int, bool, bytes]:
    """(opcode, masked, payload) of one short frame, unmasked."""
    opcode, second = data[0] & 0x0F, data[1]
    length = second & 0x7F
    assert length < 126
    assert data[0] & 0x80  # final
    if second & 0x80:
        mask = data[2:6]
        return opcode, True, frames.unmask(data[6 : 6 + length], mask)
    return opcode, False, data[2 : 2 + length]


async def receive_exactly(stream: trio.SocketStream, size: int) -> bytes:
    data = b""
    with trio.fail_after(5):
        while len(data) < size:
            chunk = await stream.receive_some(size - len(data))
            assert chunk, "closed early"
            data += chunk
    return data


# --- the server side -----------------------------------------------------------------------


async def test_server_messages_before_a_close_come_first_then_the_close(socket_pair: Pair) -> None:
    a, peer = socket_pair()
    ws = ServerWebSocket(a, 1 << 20)
    payload = close_payload(1001, "going away")
    await peer.send_all(
        masked(frames.OP_TEXT, b"one")
        + masked(frames.OP_BINARY, b"\x02")
        + masked(frames.OP_CLOSE, payload)
    )
    assert await ws.receive() == "one"
    assert await ws.receive() == b"\x02"
    for _ in range(2):  # the closed state stays
        with pytest.raises(WebSocketClosed) as info:
            await ws.receive()
        assert (info.value.code, info.value.reason) == (1001, "going away")


async def test_server_pings_are_answered_through_the_control_callback(socket_pair: Pair) -> None:
    a, peer = socket_pair()
    ws = ServerWebSocket(a, 1 << 20)
    control: list[bytes] = []
    ws.on_control_frame(control.append)
    await peer.send_all(masked(frames.OP_PING, b"are you there") + masked(frames.OP_TEXT, b"x"))
    assert await ws.receive() == "x"
    assert control == [frame(frames.OP_PONG, b"are you there")]  # unmasked, same payload
    # A pong from the peer is not a message, and not answered.
    await peer.send_all(masked(frames.OP_PONG, b"p") + masked(frames.OP_TEXT, b"y"))
    assert await ws.receive() == "y"
    assert len(control) == 1


async def test_server_protocol_errors_close_with_their_code_after_earlier_messages(
    socket_pair: Pair,
) -> None:
    for bad, code in [
        (frames.masked_frame(0x3, b""), 1002),  # unknown opcode
        (frames.frame_header(frames.OP_TEXT, 1) + b"x", 1002),  # unmasked client frame
        (masked(frames.OP_TEXT, b"\xff\xfe"), 1007),  # not UTF-8
    ]:
        a, peer = socket_pair()
        ws = ServerWebSocket(a, 1 << 20)
        await peer.send_all(masked(frames.OP_TEXT, b"before") + bad)
        assert await ws.receive() == "before"
        with pytest.raises(WebSocketClosed) as info:
            await ws.receive()
        assert info.value.code == code
        assert info.value.reason.startswith("protocol error: ")


async def test_server_refuses_an_oversized_message_from_its_header(socket_pair: Pair) -> None:
    a, peer = socket_pair()
    ws = ServerWebSocket(a, 1000)
    # Only the header of a 2000-byte message: the payload never needs to arrive.
    await peer.send_all(frames.frame_header(frames.OP_BINARY, 2000, masked=True) + b"mask")
    with pytest.raises(MessageTooBig) as info:
        await ws.receive()
    assert info.value.limit == 1000


async def test_server_a_dropped_connection_is_1006(socket_pair: Pair) -> None:
    a, peer = socket_pair()
    ws = ServerWebSocket(a, 1 << 20)
    await peer.aclose()
    with pytest.raises(WebSocketClosed) as info:
        await ws.receive()
    assert info.value.code == 1006


async def test_server_close_sends_its_code_and_waits_for_the_peers_close(socket_pair: Pair) -> None:
    a, peer = socket_pair()
    ws = ServerWebSocket(a, 1 << 20)

    async def peer_side() -> None:
        sent = await receive_exactly(peer, len(close_frame(1012)))
        assert read_frame(sent) == (frames.OP_CLOSE, False, close_payload(1012))
        # Data before the peer's Close is discarded while closing.
        await peer.send_all(masked(frames.OP_TEXT, b"late") + masked(frames.OP_CLOSE, sent[2:]))
        with trio.fail_after(5):
            assert await peer.receive_some(10) == b""  # then the server hangs up

    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer_side)
        with trio.fail_after(5):
            await ws.close(1012, wait=5)


async def test_try_send_writes_what_the_socket_takes_and_says_how_much(socket_pair: Pair) -> None:
    a, peer = socket_pair()
    ws = ServerWebSocket(a, 1 << 20)
    hello = text_frame(b"hello")
    assert ws.try_send(hello) == len(hello)
    assert await receive_exactly(peer, len(hello)) == hello
    big = text_frame(os.urandom(1 << 16))
    sent = [ws.try_send(big) for _ in range(200)]  # nobody reads: the buffer fills
    assert sent[-1] == 0
    assert 0 < sum(sent) < 200 * len(big)


async def test_try_send_on_a_stream_without_a_socket_writes_nothing() -> None:
    a, _ = trio.testing.memory_stream_pair()
    assert ServerWebSocket(a, 1 << 20).try_send(text_frame(b"x")) == 0


# --- the client side -----------------------------------------------------------------------


async def test_client_bytes_received_with_the_upgrade_are_the_first_messages(
    socket_pair: Pair,
) -> None:
    b, peer = socket_pair()
    ws = ClientWebSocket(b, text_frame(b"first") + text_frame(b"sec"))
    await peer.send_all(text_frame(b"ond"))
    assert [await ws.receive(), await ws.receive(), await ws.receive()] == ["first", "sec", "ond"]


async def test_client_pings_are_answered_with_masked_pongs(socket_pair: Pair) -> None:
    b, peer = socket_pair()
    ws = ClientWebSocket(b)
    await peer.send_all(frame(frames.OP_PING, b"ping!") + text_frame(b"x"))
    assert await ws.receive() == "x"
    pong = await receive_exactly(peer, 2 + 4 + 5)
    assert read_frame(pong) == (frames.OP_PONG, True, b"ping!")


async def test_client_close_and_errors_are_connection_closed_with_the_code(
    socket_pair: Pair,
) -> None:
    b, peer = socket_pair()
    ws = ClientWebSocket(b)
    await peer.send_all(text_frame(b"a") + frame(frames.OP_CLOSE, close_payload(1012, "bye")))
    assert await ws.receive() == "a"
    with pytest.raises(ConnectionClosed) as info:
        await ws.receive()
    assert (info.value.code, str(info.value)) == (1012, "connection closed (1012) bye")

    b, peer = socket_pair()
    ws = ClientWebSocket(b)
    await peer.send_all(masked(frames.OP_TEXT, b"masked"))  # servers never mask
    with pytest.raises(ConnectionClosed) as info:
        await ws.receive()
    assert str(info.value) == "connection closed (1002) server frames are unmasked"

    b, peer = socket_pair()
    ws = ClientWebSocket(b, max_message_size=10)
    await peer.send_all(frames.frame_header(frames.OP_TEXT, 11))
    with pytest.raises(ConnectionClosed) as info:
        await ws.receive()
    assert info.value.code == 1009

    b, peer = socket_pair()
    ws = ClientWebSocket(b)
    await peer.aclose()
    with pytest.raises(ConnectionClosed) as info:
        await ws.receive()
    assert str(info.value) == "connection closed (1006) connection dropped"


async def test_client_sends_masked_text_frames_and_a_masked_close(socket_pair: Pair) -> None:
    b, peer = socket_pair()
    ws = ClientWebSocket(b)
    await ws.send_texts([b"one", "tw\u00f6".encode()])
    await ws.send("three")
    parser = frames.FrameParser(1 << 20)  # a server's parser: masked frames only
    messages: list[object] = []
    with trio.fail_after(5):
        while len(messages) < 3:
            messages += parser.feed(await peer.receive_some(65536))
    assert messages == ["one", "tw\u00f6", "three"]
    await ws.aclose(1001)
    assert parser.feed(await peer.receive_some(65536)) == [frames.Close(1001, "")]


async def test_client_send_on_a_broken_connection_is_connection_closed(socket_pair: Pair) -> None:
    b, peer = socket_pair()
    ws = ClientWebSocket(b)
    await peer.aclose()
    with pytest.raises(ConnectionClosed) as info:
        await ws.send_texts([b"x" * 65536] * 100)  # more than the buffer: the write fails
    assert info.value.code == 1006
