"""Both sides of an open WebSocket on a trio stream, once the upgrade is done.

The upgrade itself, on either side, is :mod:`iii_trio.runtime.wire.handshake`. After it,
:class:`WebSocket` holds what the two sides share: bytes in through one
:class:`~iii_trio.runtime.wire.frames.FrameParser`, whole messages out of one queue, the
closed state, and the answers to pings. :class:`ServerWebSocket` (the engine's side) and
:class:`ClientWebSocket` (the trio SDK's and the CLI's side) add how each one sends.

This is the one place that knows how frames travel, so it can be tuned or replaced on its
own (see docs/performance.md). Choices, each measured against trio-websocket:

- Reads are 64 KiB at a time and every complete message in a read is handled before the
  next read, instead of one channel hop per message; after a short read the next one
  waits for readability first (:mod:`iii_trio.runtime.wire.socket_io`).
- Server frames are never masked, so outbound frames are built here (a 2-10 byte header
  and the payload) rather than through wsproto's generic encoder, and the connection's
  writer sends every frame that is ready in one ``send_all``. A quiet connection writes a
  frame at once with :meth:`ServerWebSocket.try_send` instead of waking its writer.
- After the upgrade, frames are parsed by :mod:`iii_trio.runtime.wire.frames`, a small
  parser for exactly what each side receives, instead of wsproto's generic frame machinery.
- permessage-deflate is declined: compression costs more CPU than loopback bandwidth.
"""

from __future__ import annotations

import abc
import collections
import struct
from collections.abc import Callable, Sequence

import trio

from iii_trio.runtime.wire import frames as ws_frames
from iii_trio.runtime.wire.socket_io import SocketReader, socket_fd, try_write

READ_SIZE = 65536

# Close codes used by the engine.
NORMAL_CLOSURE = 1000
MESSAGE_TOO_BIG = 1009
SERVICE_RESTART = 1012

# Largest message a client takes from the server. Engine frames are bounded by the engine's
# max_message_size (64 MiB by default).
CLIENT_MAX_MESSAGE_SIZE = 2**26

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
    """The peer closed the connection (or it dropped: code 1006). Server side."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed with code {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class MessageTooBig(Exception):
    """A message over the server's limit (refused from its frame header). Server side."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"message larger than {limit} bytes")
        self.limit = limit


class ConnectionClosed(Exception):
    """The server closed the connection, it dropped, or it broke the protocol. Client side
    (its message is the one the SDK logs and the CLI prints)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed ({code}) {reason}".rstrip())
        self.code = code


class WebSocket(abc.ABC):
    """What both sides of an open WebSocket share: one task calls :meth:`receive`.

    Every complete message in a read is queued at once, and :meth:`receive` hands them out
    before it reads again. A Close from the peer, a protocol error or a dropped connection
    becomes the closed state, raised by :meth:`receive` once the messages read before it are
    taken. A Ping is answered with a Pong after the read it came in (pongs are control
    frames: the peer's Close, if any, is answered by each side's close, not here).

    Each side says how its frames look (:meth:`_frame`: masked or not), what its closed
    state is (:meth:`_closed_error`, :meth:`_protocol_error`) and how its pongs leave
    (:meth:`_send_pongs`).
    """

    def __init__(self, stream: trio.abc.Stream, parser: ws_frames.FrameParser) -> None:
        self.stream = stream
        self._reader = SocketReader(stream, READ_SIZE)
        self._parser = parser
        self._ready: collections.deque[str | bytes] = collections.deque()
        self._closed: Exception | None = None
        self._pongs: list[bytes] = []  # answers to pings, sent after the read they came in

    @property
    def bytes_received(self) -> int:
        """Bytes read from the peer so far (the keepalive watches it change)."""
        return self._reader.bytes_received

    async def receive(self) -> str | bytes:
        """The next complete message: ``str`` for text, ``bytes`` for binary.

        Raises the side's closed error when the peer closes, the stream drops or the peer
        breaks the protocol (on the server, :class:`MessageTooBig` for an oversized one).
        """
        while not self._ready:
            if self._closed is not None:
                raise self._closed
            data = await self._reader.receive_some()
            if not data:
                raise self._closed_error(1006, "connection dropped")
            self._feed(data)
            if self._pongs:
                pongs, self._pongs = self._pongs, []
                await self._send_pongs(pongs)
        return self._ready.popleft()

    def _feed(self, data: bytes) -> None:
        # Messages before a Close or a protocol error are still delivered, then it applies.
        for event in self._parser.feed(data):
            if isinstance(event, (str, bytes)):
                self._ready.append(event)
            elif isinstance(event, ws_frames.Ping):
                self._pongs.append(self._frame(_OP_PONG, event.payload))
            else:
                self._closed = self._closed_error(event.code, event.reason)
        error = self._parser.error
        if error is not None and self._closed is None:
            self._closed = self._protocol_error(error)

    @abc.abstractmethod
    def _frame(self, opcode: int, payload: bytes) -> bytes:
        """One final frame as this side sends it."""

    @abc.abstractmethod
    def _closed_error(self, code: int, reason: str) -> Exception:
        """What :meth:`receive` raises once the peer closed with ``code`` (1006: dropped)."""

    @abc.abstractmethod
    def _protocol_error(self, error: ws_frames.FrameError) -> Exception:
        """What :meth:`receive` raises once the peer broke the protocol."""

    @abc.abstractmethod
    async def _send_pongs(self, pongs: list[bytes]) -> None:
        """Send the pong frames answering the pings of the last read, in order."""


class ServerWebSocket(WebSocket):
    """An accepted server-side WebSocket. One reader task calls :meth:`receive`; one writer
    task calls :meth:`send` (trio streams allow one sender and one receiver at a time), and
    while it is idle, :meth:`try_send` may write a frame at once."""

    def __init__(self, stream: trio.abc.Stream, max_message_size: int) -> None:
        super().__init__(stream, ws_frames.FrameParser(max_message_size))
        self._fd = socket_fd(stream)
        self._control: Callable[[bytes], None] | None = None

    def on_control_frame(self, send: Callable[[bytes], None]) -> None:
        """Where to put pong / close-echo frames (the connection's ordered outbox)."""
        self._control = send

    def try_send(self, data: bytes) -> int:
        """Write what the socket takes right now, without waiting, and say how many bytes
        that was: 0 when its buffer is full, it broke, or the stream is not a socket. The
        caller queues the rest for its writer, which meets and reports a broken socket.

        Only while no :meth:`send` is under way (frames would interleave)."""
        return try_write(self._fd, data)

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

    def _frame(self, opcode: int, payload: bytes) -> bytes:
        return frame(opcode, payload)

    def _closed_error(self, code: int, reason: str) -> Exception:
        return WebSocketClosed(code, reason)  # close() answers the peer's Close

    def _protocol_error(self, error: ws_frames.FrameError) -> Exception:
        if error.code == ws_frames.MESSAGE_TOO_BIG:
            return MessageTooBig(self._parser.max_message_size)
        return WebSocketClosed(error.code, f"protocol error: {error.reason}")

    async def _send_pongs(self, pongs: list[bytes]) -> None:
        if self._control is not None:
            for pong in pongs:
                self._control(pong)


class ClientWebSocket(WebSocket):
    """The client side, opened by :func:`iii_trio.runtime.wire.handshake.connect`. One reader
    task calls :meth:`receive`; any task may send (a lock keeps frames whole). Frames are
    masked with a fresh key each (RFC 6455 §5.3); pings are answered as they are read."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        received: bytes = b"",
        *,
        max_message_size: int = CLIENT_MAX_MESSAGE_SIZE,
    ) -> None:
        """``received``: bytes that followed the server's 101 response in the same read
        (the server may speak first); their messages are the first :meth:`receive` returns."""
        super().__init__(stream, ws_frames.FrameParser(max_message_size, masked=False))
        self._send_lock = trio.Lock()
        if received:
            self._feed(received)

    async def send(self, text: str) -> None:
        await self.send_texts([text.encode()])

    async def send_texts(self, payloads: Sequence[bytes]) -> None:
        """Text messages whose payloads are UTF-8 already (orjson output), in one write:
        one ``send_all`` for a batch costs less than one per frame."""
        data = b"".join([ws_frames.masked_frame(_OP_TEXT, p) for p in payloads])
        async with self._send_lock:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise ConnectionClosed(1006, "connection lost while sending") from None

    async def aclose(self, code: int = NORMAL_CLOSURE) -> None:
        close = ws_frames.masked_frame(_OP_CLOSE, struct.pack("!H", code))
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            async with self._send_lock:
                try:
                    await self.stream.send_all(close)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
        await self.stream.aclose()

    def _frame(self, opcode: int, payload: bytes) -> bytes:
        return ws_frames.masked_frame(opcode, payload)

    def _closed_error(self, code: int, reason: str) -> Exception:
        return ConnectionClosed(code, reason)

    def _protocol_error(self, error: ws_frames.FrameError) -> Exception:
        return ConnectionClosed(error.code, error.reason)

    async def _send_pongs(self, pongs: list[bytes]) -> None:
        async with self._send_lock:
            for pong in pongs:
                try:
                    await self.stream.send_all(pong)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
