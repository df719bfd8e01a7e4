"""The HTTP upgrade, client side (runtime/wire/handshake.py), against a real engine and
against a bare TCP server that answers with exactly the bytes a test needs."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import orjson
import pytest
import trio

from iii_trio.runtime.wire import handshake
from iii_trio.runtime.wire.websocket import ConnectionClosed, text_frame
from tests.support.engine import StartEngine, worker_url

Answer = Callable[[trio.SocketStream, bytes], Awaitable[None]]


async def test_the_upgrade_is_refused_without_the_token(start_engine: StartEngine) -> None:
    engine = await start_engine(auth_token="s3cret")
    with pytest.raises(handshake.HandshakeRejected) as info:
        await handshake.connect(worker_url(engine))
    assert info.value.status == 401


async def test_frames_travel_both_ways_after_the_upgrade(start_engine: StartEngine) -> None:
    engine = await start_engine(auth_token="s3cret")
    headers = [("Authorization", "Bearer s3cret")]
    ws = await handshake.connect(worker_url(engine), headers)
    try:
        # The engine speaks first; its frame may arrive in the same read as the 101.
        registered = orjson.loads(await ws.receive())
        assert registered["type"] == "workerregistered"
        big = "x" * 70_000  # a 64-bit length on the way out and back
        call = {"type": "invokefunction", "invocation_id": "i1", "function_id": "nope::x"}
        await ws.send(orjson.dumps({**call, "data": {"blob": big}}).decode())
        result = orjson.loads(await ws.receive())
        assert result["invocation_id"] == "i1"
        assert result["error"]["code"] == "function_not_found"
    finally:
        await ws.aclose()


def accept_key(request: bytes) -> bytes:
    """The Sec-WebSocket-Accept a server owes this request (RFC 6455 §4.2.2)."""
    for line in request.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
            return base64.b64encode(hashlib.sha1(value.strip() + guid).digest())
    raise AssertionError(f"no key in {request!r}")


def switching(key: bytes) -> bytes:
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + key + b"\r\n\r\n"
    )


@asynccontextmanager
async def bare_server(answer: Answer) -> AsyncIterator[str]:
    """A TCP server for one connection: it reads the upgrade request and runs ``answer``."""

    async def serve(stream: trio.SocketStream) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            data = await stream.receive_some(65536)
            if not data:
                return
            request += data
        await answer(stream, request)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"
        nursery.cancel_scope.cancel()


async def test_frames_that_came_with_the_101_are_the_first_messages() -> None:
    async def answer(stream: trio.SocketStream, request: bytes) -> None:
        hello = text_frame(b"hello") + text_frame(b"world")
        await stream.send_all(switching(accept_key(request)) + hello)  # one write
        await trio.sleep_forever()

    async with bare_server(answer) as url:
        ws = await handshake.connect(url)
        with trio.fail_after(5):
            assert [await ws.receive(), await ws.receive()] == ["hello", "world"]
        await ws.aclose()


async def test_a_wrong_accept_key_ends_the_upgrade_with_1002() -> None:
    async def answer(stream: trio.SocketStream, request: bytes) -> None:
        await stream.send_all(switching(base64.b64encode(b"not the key")))
        await trio.sleep_forever()

    async with bare_server(answer) as url:
        with pytest.raises(ConnectionClosed) as info:
            await handshake.connect(url)
    assert info.value.code == 1002


async def test_a_server_that_hangs_up_during_the_upgrade_is_a_1006() -> None:
    async def answer(stream: trio.SocketStream, request: bytes) -> None:
        await stream.aclose()

    async with bare_server(answer) as url:
        with pytest.raises(ConnectionClosed) as info:
            await handshake.connect(url)
    assert info.value.code == 1006
    assert str(info.value) == "connection closed (1006) closed during the handshake"


async def test_only_ws_urls_are_taken() -> None:
    with pytest.raises(ValueError, match="use ws://host:port"):
        await handshake.connect("wss://127.0.0.1:1/")
