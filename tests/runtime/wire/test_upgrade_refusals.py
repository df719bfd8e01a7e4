"""HTTP framing of the WebSocket upgrade (issue 16, item 12), server side: an upgrade that
RFC 6455 §4.2.1 does not allow (HTTP/1.0, a ``Sec-WebSocket-Key`` that is not 16 bytes in
base64) is refused with 400 on every WebSocket port, the worker port and the stream port,
since both upgrade through ``handshake.accept``. Raw sockets against a real engine."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from iii_trio.runtime.engine import Engine
from tests.runtime.modules.stream.support import stream_entry, stream_port
from tests.support.engine import StartEngine

GOOD_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's own example: 16 bytes in base64


def upgrade(version: bytes = b"HTTP/1.1", key: bytes | None = GOOD_KEY) -> bytes:
    lines = [
        b"GET / " + version,
        b"Host: x",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Version: 13",
    ]
    if key is not None:
        lines.append(b"Sec-WebSocket-Key: " + key)
    return b"\r\n".join(lines) + b"\r\n\r\n"


@pytest.fixture
async def engine(start_engine: StartEngine) -> Engine:
    return await start_engine(modules=(stream_entry(),))


def ports(engine: Engine) -> dict[str, int]:
    return {"worker": engine.port, "stream": stream_port(engine)}


async def first_answer(port: int, request: bytes) -> bytes:
    """The status line the port answers ``request`` with."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(request)
        received = b""
        with trio.fail_after(5):
            while b"\r\n" not in received:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                received += chunk
    return received.split(b"\r\n", 1)[0]


@pytest.mark.parametrize("port", ["worker", "stream"])
@pytest.mark.parametrize(
    "request_bytes",
    [
        upgrade(version=b"HTTP/1.0"),
        upgrade(key=b"not base64!"),
        upgrade(key=b"c2hvcnQ="),  # base64, but 5 bytes
        upgrade(key=b"AAAAAAAAAAAAAAAAAAAAAAAAAAAA"),  # base64, but 21 bytes
        upgrade(key=None),  # wsproto refused this one already
    ],
    ids=["http-1.0", "key-not-base64", "key-too-short", "key-too-long", "no-key"],
)
async def test_http_framing_a_malformed_upgrade_is_refused_with_400(
    engine: Engine, port: str, request_bytes: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    status = await first_answer(ports(engine)[port], request_bytes)
    assert status.startswith(b"HTTP/1.1 400 "), status


@pytest.mark.parametrize("port", ["worker", "stream"])
async def test_a_well_formed_upgrade_is_still_accepted(
    engine: Engine, port: str, autojump_clock: trio.testing.MockClock
) -> None:
    status = await first_answer(ports(engine)[port], upgrade())
    assert status.startswith(b"HTTP/1.1 101 "), status
