"""The client side of the worker WebSocket: wsproto on a trio TCP stream.

One reader task calls :meth:`ClientWebSocket.receive`; any task may send (a lock keeps
frames whole). Pings from the engine are answered as they are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

READ_SIZE = 65536


class ConnectionClosed(Exception):
    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed ({code}) {reason}".rstrip())
        self.code = code


class HandshakeRejected(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"the engine refused the connection with HTTP {status}")
        self.status = status


class ClientWebSocket:
    def __init__(self, stream: trio.SocketStream, ws: WSConnection) -> None:
        self._stream = stream
        self._ws = ws
        self._send_lock = trio.Lock()
        self._ready: list[str | bytes] = []
        self._parts: list[str | bytes] = []
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
        ws = WSConnection(ConnectionType.CLIENT)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = Request(
            host=f"{host}:{port}",
            target=target,
            extra_headers=[(k.encode(), v.encode()) for k, v in headers],
        )
        try:
            await stream.send_all(ws.send(request))
            while True:
                data = await stream.receive_some(READ_SIZE)
                if not data:
                    raise ConnectionClosed(1006, "closed during the handshake")
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        client = cls(stream, ws)
                        client._feed_events()  # frames that came with the handshake
                        return client
                    if isinstance(event, RejectConnection):
                        raise HandshakeRejected(event.status_code)
        except BaseException:
            await stream.aclose()
            raise

    async def send(self, text: str) -> None:
        async with self._send_lock:
            try:
                await self._stream.send_all(self._ws.send(TextMessage(data=text)))
            except (trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError):
                raise ConnectionClosed(1006, "connection lost while sending") from None

    async def receive(self) -> str | bytes:
        while not self._ready:
            if self._closed is not None:
                raise self._closed
            try:
                data = await self._stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                raise ConnectionClosed(1006, "connection dropped")
            try:
                self._ws.receive_data(data)
            except RemoteProtocolError as exc:
                raise ConnectionClosed(1002, str(exc)) from None
            self._feed_events()
            if self._pongs:
                await self._flush_pongs()
        return self._ready.pop(0)

    def _feed_events(self) -> None:
        for event in self._ws.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                payload: str | bytes = (
                    event.data if isinstance(event.data, str) else bytes(event.data)
                )
                self._parts.append(payload)
                if event.message_finished:
                    empty: str | bytes = "" if isinstance(payload, str) else b""
                    self._ready.append(empty.join(self._parts))  # type: ignore[arg-type]
                    self._parts = []
            elif isinstance(event, Ping):
                self._pongs.append(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self._closed = ConnectionClosed(event.code, event.reason or "")

    async def _flush_pongs(self) -> None:
        pongs, self._pongs = self._pongs, []
        async with self._send_lock:
            for pong in pongs:
                try:
                    await self._stream.send_all(pong)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return

    async def aclose(self, code: int = 1000) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            async with self._send_lock:
                try:
                    await self._stream.send_all(self._ws.send(CloseConnection(code=code)))
                except (trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError):
                    pass
        await self._stream.aclose()
