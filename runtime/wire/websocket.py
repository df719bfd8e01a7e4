"""The WebSocket transport: wsproto driven directly on a trio stream.

This is the one place that knows how frames travel, so it can be tuned or replaced on its
own (see docs/performance.md). Choices, each measured against trio-websocket:

- Reads are 64 KiB at a time and every complete message in a read is handled before the
  next read, instead of one channel hop per message; after a short read the next one
  waits for readability first (:mod:`iii_trio.runtime.wire.socket_io`).
- Server frames are never masked, so outbound frames are built here (a 2-10 byte header
  and the payload) rather than through wsproto's generic encoder, and the connection's
  writer sends every frame that is ready in one ``send_all``.
- After the upgrade, frames are parsed by :mod:`iii_trio.runtime.wire.frames`, a small
  parser for exactly what a server receives, instead of wsproto's generic frame machinery.
- permessage-deflate is declined: compression costs more CPU than loopback bandwidth.
"""

from __future__ import annotations

import collections
import struct
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from iii_trio.runtime.wire import frames as ws_frames
from iii_trio.runtime.wire.socket_io import SocketReader

READ_SIZE = 65536

# Close codes used by the engine.
NORMAL_CLOSURE = 1000
MESSAGE_TOO_BIG = 1009
SERVICE_RESTART = 1012

_OP_TEXT = ws_frames.OP_TEXT
_OP_BINARY = ws_frames.OP_BINARY
_OP_CLOSE = ws_frames.OP_CLOSE
_OP_PONG = ws_frames.OP_PONG


def frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame (server → client)."""
    return ws_frames.frame_header(opcode, len(payload)) + payload


def text_frame(payload: bytes) -> bytes:
    """A text frame whose payload is already UTF-8 (orjson output)."""
    return frame(_OP_TEXT, payload)


def binary_frame(payload: bytes) -> bytes:
    return frame(_OP_BINARY, payload)


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(_OP_CLOSE, struct.pack("!H", code) + reason.encode("utf-8")[:120])


class WebSocketClosed(Exception):
    """The peer closed the connection (or it dropped: code 1006)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed with code {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class MessageTooBig(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"message larger than {limit} bytes")
        self.limit = limit


@attrs.frozen
class Rejection:
    """An HTTP answer instead of an upgrade (401, 404, ...)."""

    status: int
    body: str = ""


@attrs.frozen
class HandshakeRequest:
    path: str  # the request target, query string included
    headers: Sequence[tuple[bytes, bytes]]

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class HandshakeFailed(Exception):
    pass


async def accept(
    stream: trio.abc.Stream,
    decide: Callable[[HandshakeRequest], Rejection | None],
    *,
    max_message_size: int,
    before_accept: Callable[[HandshakeRequest], Awaitable[None]] | None = None,
) -> tuple[ServerWebSocket, HandshakeRequest]:
    """Read the HTTP upgrade, ask ``decide`` whether to accept it and answer.

    ``before_accept`` runs between an accepting decision and the answer (the stream port's
    auth function, spec/modules.md §5.4). The caller bounds the time this may take (the
    handshake deadline). Raises :class:`HandshakeFailed` after answering a rejected or
    malformed request.
    """
    ws = WSConnection(ConnectionType.SERVER)
    while True:
        data = await stream.receive_some(READ_SIZE)
        if not data:
            raise HandshakeFailed("peer closed during the handshake")
        try:
            ws.receive_data(bytes(data))
            request = next((e for e in ws.events() if isinstance(e, Request)), None)
        except RemoteProtocolError as exc:
            # Not a WebSocket upgrade (plain HTTP, garbage): answer with wsproto's hint.
            hint = exc.event_hint
            status = hint.status_code if isinstance(hint, RejectConnection) else 400
            await _reject(stream, ws, Rejection(status, "not a WebSocket upgrade\n"))
            raise HandshakeFailed(str(exc)) from None
        if request is not None:
            break
    handshake = HandshakeRequest(path=request.target, headers=request.extra_headers)
    rejection = decide(handshake)
    if rejection is not None:
        await _reject(stream, ws, rejection)
        raise HandshakeFailed(f"rejected with HTTP {rejection.status}")
    if before_accept is not None:
        await before_accept(handshake)
    await stream.send_all(ws.send(AcceptConnection()))
    return ServerWebSocket(stream, max_message_size), handshake


async def _reject(stream: trio.abc.Stream, ws: WSConnection, rejection: Rejection) -> None:
    body = rejection.body.encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    try:
        out = ws.send(
            RejectConnection(status_code=rejection.status, headers=headers, has_body=True)
        )
        out += ws.send(RejectData(data=body, body_finished=True))
    except LocalProtocolError:
        return
    try:
        await stream.send_all(out)
    except trio.BrokenResourceError:
        pass


class ServerWebSocket:
    """An accepted server-side WebSocket. One reader task calls :meth:`receive`; one writer
    task calls :meth:`send` (trio streams allow one sender and one receiver at a time)."""

    def __init__(self, stream: trio.abc.Stream, max_message_size: int) -> None:
        self.stream = stream
        self._reader = SocketReader(stream, READ_SIZE)
        self._parser = ws_frames.FrameParser(max_message_size)
        self._ready: collections.deque[str | bytes] = collections.deque()
        # Raised by receive() once the messages before it are taken.
        self._closed: WebSocketClosed | MessageTooBig | None = None
        self._control: Callable[[bytes], None] | None = None

    def on_control_frame(self, send: Callable[[bytes], None]) -> None:
        """Where to put pong / close-echo frames (the connection's ordered outbox)."""
        self._control = send

    async def receive(self) -> str | bytes:
        """The next complete message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`WebSocketClosed` when the peer closes or the stream drops, and
        :class:`MessageTooBig` when a message exceeds the limit.
        """
        while not self._ready:
            if self._closed is not None:
                raise self._closed
            data = await self._reader.receive_some()
            if not data:
                raise WebSocketClosed(1006, "connection dropped")
            self._feed(data)
        return self._ready.popleft()

    def _feed(self, data: bytes) -> None:
        # Messages before a Close or a protocol error are still delivered, then it applies.
        for event in self._parser.feed(data):
            if isinstance(event, (str, bytes)):
                self._ready.append(event)
            elif isinstance(event, ws_frames.Ping):
                self._send_control(frame(_OP_PONG, event.payload))
            else:
                self._closed = WebSocketClosed(event.code, event.reason)  # close() answers
        error = self._parser.error
        if error is not None and self._closed is None:
            if error.code == ws_frames.MESSAGE_TOO_BIG:
                self._closed = MessageTooBig(self._parser.max_message_size)
            else:
                self._closed = WebSocketClosed(error.code, f"protocol error: {error.reason}")

    def _send_control(self, data: bytes) -> None:
        if self._control is not None:
            self._control(data)

    async def send(self, data: bytes) -> None:
        """Write already framed bytes."""
        await self.stream.send_all(data)

    async def close(self, code: int, *, wait: float = 1.0) -> None:
        """The closing handshake: send Close, wait up to ``wait`` s for the peer's Close
        (unless it already sent one), then close the TCP connection (the server closes
        first, RFC 6455 §7.1.1). Safe to call on a broken stream."""
        try:
            await self.stream.send_all(close_frame(code))
            with trio.move_on_after(wait):
                while self._closed is None:
                    data = await self.stream.receive_some(READ_SIZE)
                    if not data:
                        break
                    self._drain(bytes(data))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        await self.stream.aclose()

    def _drain(self, data: bytes) -> None:
        """Discard everything but the peer's Close while closing."""
        for event in self._parser.feed(data):
            if isinstance(event, ws_frames.Close):
                self._closed = WebSocketClosed(event.code, event.reason)
        if self._parser.error is not None:
            self._closed = WebSocketClosed(1002, "protocol error while closing")

    async def aclose(self) -> None:
        await self.stream.aclose()
