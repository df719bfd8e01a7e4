"""trio-websocket as a test client, minus one leak.

trio-websocket 0.12 never closes its TCP socket when the *server* starts the closing
handshake (its reader stops on EOF once the state is CLOSED without closing the stream),
which `filterwarnings = error` turns into a ResourceWarning failure. ``open_ws`` closes the
stream after the block.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio_websocket import WebSocketConnection, open_websocket_url


@asynccontextmanager
async def open_ws(url: str, **kwargs: Any) -> AsyncIterator[WebSocketConnection]:
    async with open_websocket_url(url, **kwargs) as ws:
        try:
            yield ws
        finally:
            await close_stream(ws)


async def close_stream(ws: WebSocketConnection) -> None:
    stream: trio.abc.Stream = ws._stream
    with trio.CancelScope(shield=True):
        await stream.aclose()


async def upgrade_status(port: int, path: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status the engine answers a WebSocket upgrade of ``path`` with.

    A bare request rather than trio-websocket, which leaks its socket on a rejection too.
    """
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = b""
        with trio.fail_after(10):
            while b"\r\n" not in response:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                response += chunk
    finally:
        await stream.aclose()
    return int(response.split(b" ", 2)[1])
