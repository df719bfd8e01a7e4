"""One HTTP/1.1 server connection on h11: read request heads and bodies, write responses.

The RestApiModule drives one :class:`HttpConnection` per accepted socket. A request body can
be read whole (JSON bodies) or event by event while the response is already being written
(streamed bodies), so reading and writing are separate methods that two tasks may use at once.

Framing is strict where a lenient reading would let one request hide another (RFC 9112):
a head with both ``Content-Length`` and ``Transfer-Encoding`` is refused (400) and the
connection closed, and a connection closed while the client may still be sending is closed
gracefully (:meth:`HttpConnection.close`), so the client reads its answer (413, 431, ...)
instead of a reset.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

import h11
import trio

log = logging.getLogger("iii_trio.http")

READ_SIZE = 65536
MAX_HEAD_BYTES = 65536  # a longer request head is answered 431
LINGER_SECONDS = 2.0  # after an early answer: how long to read (and drop) what still arrives
LINGER_MAX_BYTES = 16 * 1024 * 1024  # ... and how much at most


class HttpError(Exception):
    """An answer in the module's error envelope (spec/modules.md §3.6)."""

    def __init__(
        self, status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or []


def too_large(limit: int) -> HttpError:
    return HttpError(413, "payload_too_large", f"body larger than {limit} bytes")


class HttpConnection:
    def __init__(self, stream: trio.SocketStream) -> None:
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.closing = False  # the server drains, or a failure: answer, then close
        self._waiting_for_head: trio.CancelScope | None = None

    @property
    def request_complete(self) -> bool:
        """The whole request body has been read (otherwise the connection must close)."""
        return self.h11.their_state is h11.DONE

    @property
    def reusable(self) -> bool:
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    async def next_event(self) -> Any:
        """The next h11 event; None once the client has closed or cannot go on."""
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.stream.receive_some(READ_SIZE))
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            return event

    def close_when_idle(self) -> None:
        """Answer what is in flight with ``connection: close``; stop waiting for new requests."""
        self.closing = True
        if self._waiting_for_head is not None:
            self._waiting_for_head.cancel()

    async def read_head(self, deadline_seconds: float) -> h11.Request | None:
        """The next request head, or None when the client leaves, is too slow sending it or
        the server drains. Raises ``h11.RemoteProtocolError`` for a head that cannot be
        framed safely (:func:`check_framing`)."""
        with trio.move_on_after(deadline_seconds) as self._waiting_for_head:
            while True:
                event = await self.next_event()
                if event is None or isinstance(event, h11.Request):
                    self._waiting_for_head = None
                    if event is not None:
                        check_framing(event)
                    return event
        if not self.closing:
            log.info("http: no request head within %.0f s; closing", deadline_seconds)
        return None

    async def read_body(self, limit: int, held: Callable[[int], None]) -> bytearray:
        """The whole body, whatever its framing (length or chunked); 413 as soon as it grows
        past ``limit``. ``held`` is told each chunk's size as it is kept. A bytearray, so
        nothing copies it again before it is parsed."""
        body = bytearray()
        while True:
            event = await self.next_event()
            if event is None:
                raise trio.BrokenResourceError("the client closed during its request body")
            if isinstance(event, h11.Data):
                if len(body) + len(event.data) > limit:
                    raise too_large(limit)
                body += event.data
                held(len(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return body

    def finish_buffered_body(self) -> None:
        """Consume a body that has fully arrived already (none, or one small packet), so an
        early answer can keep the connection open. Never waits for the network."""
        while self.h11.their_state is h11.SEND_BODY:
            event = self.h11.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return

    async def send_full(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        headers = [*headers, ("content-length", str(len(body)))]
        if self.closing or not self.request_complete:
            headers.append(("connection", "close"))
        data = self.h11.send(h11.Response(status_code=status, headers=headers)) or b""
        data += self.h11.send(h11.Data(data=body)) or b""
        data += self.h11.send(h11.EndOfMessage()) or b""
        await self.stream.send_all(data)

    async def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        """The head of a streamed response (chunked for HTTP/1.1 clients)."""
        if self.closing:
            headers = [*headers, ("connection", "close")]
        await self.stream.send_all(self.h11.send(h11.Response(status_code=status, headers=headers)))

    async def send_data(self, data: bytes) -> None:
        if data:
            await self.stream.send_all(self.h11.send(h11.Data(data=data)) or b"")

    async def end(self) -> None:
        await self.stream.send_all(self.h11.send(h11.EndOfMessage()) or b"")

    async def close(self) -> None:
        """Close the socket; when the client may still be sending (its request was answered
        or refused before it was read to the end), first send our FIN and read what still
        arrives, dropped, for a bounded time: closing with unread data resets the
        connection, and a reset can destroy the answer before the client reads it
        (RFC 9112 §9.6)."""
        try:
            if self.h11.their_state in (h11.SEND_BODY, h11.ERROR):
                with trio.move_on_after(LINGER_SECONDS):
                    await self.stream.send_eof()
                    dropped = 0
                    while dropped < LINGER_MAX_BYTES:
                        data = await self.stream.receive_some(READ_SIZE)
                        if not data:
                            break
                        dropped += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await self.stream.aclose()


def check_framing(head: h11.Request) -> None:
    """Refuse a head whose body length two headers disagree on: with ``Transfer-Encoding``
    and ``Content-Length`` a front proxy may read one body where this server reads another,
    and the rest would run as a request nobody sent (smuggling; RFC 9112 §6.3 says close
    after answering it, refusing it is simpler and routes nothing)."""
    names = {name for name, _ in head.headers}
    if b"transfer-encoding" in names and b"content-length" in names:
        raise h11.RemoteProtocolError(
            "both Content-Length and Transfer-Encoding (RFC 9112 §6.3)", error_status_hint=400
        )
