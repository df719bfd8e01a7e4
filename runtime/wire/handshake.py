"""The HTTP upgrade to a WebSocket (RFC 6455 §4), both sides.

- The server side, :func:`accept`, is wsproto's handshake: it reads the request, lets the
  caller decide (reject with an HTTP answer, or accept after an async check) and answers.
- The client side, :func:`connect`, is h11's: it sends the request, checks the server's
  ``Sec-WebSocket-Accept`` and keeps the bytes that came after the 101 response (the server
  may speak first, in the same read).

Both return the open WebSocket of :mod:`iii_trio.runtime.wire.websocket`; wsproto and h11
are not used after the upgrade.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

import attrs
import h11
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from iii_trio.runtime.wire.websocket import (
    READ_SIZE,
    ClientWebSocket,
    ConnectionClosed,
    ServerWebSocket,
)

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3

# --- the server side --------------------------------------------------------------------


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
    before_accept: Callable[[HandshakeRequest], Awaitable[Rejection | None]] | None = None,
) -> tuple[ServerWebSocket, HandshakeRequest]:
    """Read the HTTP upgrade, ask ``decide`` whether to accept it and answer.

    ``before_accept`` runs between an accepting decision and the answer (the stream port's
    auth function, spec/modules.md §5.4) and may still reject. The caller bounds the time
    this may take (the handshake deadline). Raises :class:`HandshakeFailed` after answering
    a rejected or malformed request.
    """
    ws = WSConnection(ConnectionType.SERVER)
    head = bytearray()  # what came before the request event, for its request line
    while True:
        data = await stream.receive_some(READ_SIZE)
        if not data:
            raise HandshakeFailed("peer closed during the handshake")
        head += data
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
    rejection = _malformed_upgrade(head, handshake) or decide(handshake)
    if rejection is not None:
        await _reject(stream, ws, rejection)
        raise HandshakeFailed(f"rejected with HTTP {rejection.status}")
    if before_accept is not None:
        rejection = await before_accept(handshake)
        if rejection is not None:
            await _reject(stream, ws, rejection)
            raise HandshakeFailed(f"rejected with HTTP {rejection.status}")
    await stream.send_all(ws.send(AcceptConnection()))
    return ServerWebSocket(stream, max_message_size), handshake


def _malformed_upgrade(head: bytes | bytearray, request: HandshakeRequest) -> Rejection | None:
    """What wsproto lets through and RFC 6455 §4.2.1 does not: an upgrade must be HTTP/1.1
    (an HTTP/1.0 peer or proxy does not keep the connection for the frames that follow)
    and its ``Sec-WebSocket-Key`` must be 16 bytes in base64."""
    request_line = bytes(head).lstrip(b"\r\n").split(b"\r\n", 1)[0]
    if not request_line.endswith(b" HTTP/1.1"):
        return Rejection(400, "a WebSocket upgrade must be HTTP/1.1\n")
    try:
        key = base64.b64decode(request.header(b"sec-websocket-key") or b"", validate=True)
    except binascii.Error:
        key = b""
    if len(key) != 16:
        return Rejection(400, "Sec-WebSocket-Key must be 16 bytes in base64\n")
    return None


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


# --- the client side --------------------------------------------------------------------


class HandshakeRejected(Exception):
    """The server answered the upgrade with an HTTP status instead of 101."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the engine refused the connection with HTTP {status}")
        self.status = status


async def connect(url: str, headers: Sequence[tuple[str, str]] = ()) -> ClientWebSocket:
    """Open a TCP connection to ``ws://host:port/path?query`` and upgrade it.

    Raises :class:`HandshakeRejected` for an HTTP answer, :class:`ConnectionClosed` when the
    connection ends during the upgrade or the accept key is wrong, ``OSError`` when the host
    cannot be reached and ``ValueError`` for a URL that is not ``ws://``.
    """
    parts = urlsplit(url)
    if parts.scheme != "ws":
        raise ValueError(f"unsupported URL {url!r}: use ws://host:port")
    host = parts.hostname or "localhost"
    port = parts.port or 80
    stream = await trio.open_tcp_stream(host, port)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        received = await upgrade(stream, f"{host}:{port}", target, headers)
    except BaseException:
        await stream.aclose()
        raise
    return ClientWebSocket(stream, received)


async def upgrade(
    stream: trio.abc.Stream, host: str, target: str, headers: Sequence[tuple[str, str]]
) -> bytes:
    """The client's HTTP upgrade (RFC 6455 §4.1); returns the bytes that followed the 101
    response (frames the server sent at once)."""
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
