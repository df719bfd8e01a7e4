"""The client side of the worker WebSocket on a trio TCP stream.

h11 makes the HTTP upgrade; frames are then read and written with
:mod:`iii_trio.runtime.wire.frames` (sans-IO, shared with the engine). One reader task calls
:meth:`ClientWebSocket.receive`; any task may send (a lock keeps frames whole). Pings from
the engine are answered as they are read.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import os
import struct
from collections.abc import Sequence
from urllib.parse import urlsplit

import h11
import trio

from iii_trio.runtime.wire import frames as ws_frames
from iii_trio.runtime.wire.socket_io import SocketReader

READ_SIZE = 65536
# Engine frames are bounded by the engine's max_message_size (64 MiB by default).
MAX_MESSAGE_SIZE = 2**26
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


class ConnectionClosed(Exception):
    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed ({code}) {reason}".rstrip())
        self.code = code


class HandshakeRejected(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"the engine refused the connection with HTTP {status}")
        self.status = status


async def _upgrade(
    stream: trio.SocketStream, host: str, target: str, headers: Sequence[tuple[str, str]]
) -> bytes:
    """The HTTP upgrade (RFC 6455 §4.1); returns the bytes that followed the response."""
    key = base64.b64encode(os.urandom(16))
    fields = [("Host", host), ("Upgrade", "websocket"), ("Connection", "Upgrade")]
    fields += [("Sec-WebSocket-Key", key.decode()), ("Sec-WebSocket-Version", "13"), *headers]
    http = h11.Connection(h11.CLIENT)
    await stream.send_all(
        http.send(h11.Request(method="GET", target=target, headers=fields)) or b""
    )
    while True:
        event = http.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(READ_SIZE)
            if not data:
                raise ConnectionClosed(1006, "closed during the handshake")
            http.receive_data(bytes(data))
            continue
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            expected = base64.b64encode(hashlib.sha1(key + _ACCEPT_GUID).digest())
            if dict(event.headers).get(b"sec-websocket-accept") != expected:
                raise ConnectionClosed(1002, "the engine answered the upgrade with a wrong key")
            return bytes(http.trailing_data[0])
        if isinstance(event, h11.Response):
            raise HandshakeRejected(event.status_code)
        if isinstance(event, h11.ConnectionClosed):
            raise ConnectionClosed(1006, "closed during the handshake")


class ClientWebSocket:
    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._reader = SocketReader(stream, READ_SIZE)
        self._parser = ws_frames.FrameParser(MAX_MESSAGE_SIZE, masked=False)
        self._send_lock = trio.Lock()
        self._ready: collections.deque[str | bytes] = collections.deque()
        self._closed: ConnectionClosed | None = None
        self._pongs: list[bytes] = []

    @classmethod
    async def connect(cls, url: str, headers: Sequence[tuple[str, str]] = ()) -> ClientWebSocket:
        parts = urlsplit(url)
        if parts.scheme != "ws":
            raise ValueError(f"unsupported URL {url!r}: use ws://host:port")
        host = parts.hostname or "localhost"
        port = parts.port or 80
        stream = await trio.open_tcp_stream(host, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            leftover = await _upgrade(stream, f"{host}:{port}", target, headers)
        except BaseException:
            await stream.aclose()
            raise
        client = cls(stream)
        if leftover:
            client._feed(leftover)  # frames that came with the 101 response
        return client

    async def send(self, text: str) -> None:
        await self.send_texts([text.encode()])

    async def send_texts(self, payloads: Sequence[bytes]) -> None:
        """Text messages whose payloads are UTF-8 already (orjson output), in one write:
        one ``send_all`` for a batch costs less than one per frame."""
        data = b"".join([ws_frames.masked_frame(ws_frames.OP_TEXT, p) for p in payloads])
        async with self._send_lock:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise ConnectionClosed(1006, "connection lost while sending") from None

    async def receive(self) -> str | bytes:
        while not self._ready:
            if self._closed is not None:
                raise self._closed
            data = await self._reader.receive_some()
            if not data:
                raise ConnectionClosed(1006, "connection dropped")
            self._feed(data)
            if self._pongs:
                await self._flush_pongs()
        return self._ready.popleft()

    def _feed(self, data: bytes) -> None:
        for event in self._parser.feed(data):
            if isinstance(event, (str, bytes)):
                self._ready.append(event)
            elif isinstance(event, ws_frames.Ping):
                self._pongs.append(ws_frames.masked_frame(ws_frames.OP_PONG, event.payload))
            else:
                self._closed = ConnectionClosed(event.code, event.reason)
        error = self._parser.error
        if error is not None and self._closed is None:
            self._closed = ConnectionClosed(error.code, error.reason)

    async def _flush_pongs(self) -> None:
        pongs, self._pongs = self._pongs, []
        async with self._send_lock:
            for pong in pongs:
                try:
                    await self._stream.send_all(pong)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return

    async def aclose(self, code: int = 1000) -> None:
        close = ws_frames.masked_frame(ws_frames.OP_CLOSE, struct.pack("!H", code))
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            async with self._send_lock:
                try:
                    await self._stream.send_all(close)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
        await self._stream.aclose()
