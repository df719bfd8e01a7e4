"""The worker port: accepts WebSocket upgrades and starts one actor per socket (spec §3.1).

``/`` is the worker protocol, ``/otel`` a telemetry-only socket, ``/ws/channels/<id>`` a
channel side; anything else is HTTP 404. With ``auth_token`` set, ``/`` and ``/otel`` need
``Authorization: Bearer <token>`` or get HTTP 401 (D13).

Before a byte is read, every accepted socket passes the port's gate
(:mod:`.admission`): the descriptor reserve, protected mode (:mod:`.access`: without a token,
non-loopback peers get 403) and the port's connection caps. Every upgraded socket is then
watched by the port's keepalive (:mod:`.keepalive`).
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import trio

from iii_trio.actors import Actor, MailboxClosed, current_actor_id, current_system
from iii_trio.runtime.connections.access import AccessPolicy
from iii_trio.runtime.connections.admission import PortGate, peer_address
from iii_trio.runtime.connections.connection import (
    DEFAULT_OUTBOX_BYTES,
    DEFAULT_OUTBOX_CAPACITY,
    WorkerConnection,
)
from iii_trio.runtime.connections.keepalive import (
    KEEPALIVE_CLOSE_CODE,
    ControlFrames,
    Keepalive,
    KeepaliveSettings,
)
from iii_trio.runtime.wire import protocol
from iii_trio.runtime.wire.handshake import HandshakeFailed, HandshakeRequest, Rejection, accept
from iii_trio.runtime.wire.websocket import ServerWebSocket, WebSocketClosed

if TYPE_CHECKING:
    from iii_trio.runtime.config.loading import EngineConfig
    from iii_trio.runtime.connections.channels import ChannelTable
    from iii_trio.runtime.connections.dispatch import Dispatcher

log = logging.getLogger("iii_trio.listener")

HANDSHAKE_TIMEOUT_SECONDS = 10.0
CHANNEL_PREFIX = "/ws/channels/"


class Listener(Actor):
    kind = "listener"

    def __init__(
        self,
        config: EngineConfig,
        dispatcher: Dispatcher,
        channels: ChannelTable,
        *,
        outbox_capacity: int = DEFAULT_OUTBOX_CAPACITY,
        outbox_bytes: int = DEFAULT_OUTBOX_BYTES,
        access: AccessPolicy,
        gate: PortGate,
        keepalive: KeepaliveSettings,
    ) -> None:
        super().__init__("worker-port")
        self.config = config
        self.dispatcher = dispatcher
        self.channels = channels
        self.outbox_capacity = outbox_capacity
        self.outbox_bytes = outbox_bytes
        self.access = access  # protected mode and the token
        self.gate = gate  # caps and the descriptor reserve of this port
        self.keepalive = Keepalive(keepalive)
        self._accepting = trio.CancelScope()
        self.port: int | None = None

    def stop_accepting(self) -> None:
        """Close the listening socket; live connections carry on (graceful drain)."""
        self._accepting.cancel()

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        config = self.config
        listeners = await trio.open_tcp_listeners(config.port, host=config.host)
        self.port = listeners[0].socket.getsockname()[1]
        for listener in listeners:
            listener.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task_status.started(self.port)
        async with trio.open_nursery() as connections:
            connections.start_soon(self.keepalive.run)
            with self._accepting:
                await trio.serve_listeners(
                    self._handle,
                    listeners,
                    handler_nursery=connections,
                )
            for listener in listeners:
                await listener.aclose()

    async def _handle(self, stream: trio.abc.Stream) -> None:
        assert isinstance(stream, trio.SocketStream)
        peer, peer_port = peer_address(stream)
        rejection = self.gate.screen(stream, peer, self.access.peer_refusal)
        if rejection is not None:
            await self.gate.refuse(stream, rejection)
            return
        with self.gate.admitted(peer):
            await self._serve(stream, peer, peer_port)

    async def _serve(self, stream: trio.SocketStream, peer: str, peer_port: int) -> None:
        try:
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT_SECONDS):
                ws, request = await accept(
                    stream, self._decide, max_message_size=self.config.max_message_size
                )
        except (HandshakeFailed, trio.TooSlowError, trio.BrokenResourceError, OSError) as exc:
            log.debug("handshake from %s failed: %s", peer, exc)
            await stream.aclose()
            return
        path = urlsplit(request.path).path
        if path == "/":
            conn = WorkerConnection(
                self.dispatcher,
                ws,
                peer,
                peer_port=peer_port,
                max_in_flight=self.config.max_in_flight_per_worker,
                outbox_capacity=self.outbox_capacity,
                outbox_bytes=self.outbox_bytes,
            )
            # A temporary child, contained: one connection's failure must not restart the
            # listener (and so drop every other worker).
            with self.keepalive.watching(ws, _pinger(conn), functools.partial(_retire, conn)):
                await current_system().run_temporary(conn, current_actor_id())
        elif path == "/otel":
            await self._telemetry_socket(ws)
        else:
            await self._channel_socket(request, ws)

    def _decide(self, request: HandshakeRequest) -> Rejection | None:
        parts = urlsplit(request.path)
        if parts.path in ("/", "/otel"):
            return self.access.token_refusal(request)
        if parts.path.startswith(CHANNEL_PREFIX):
            query = parse_qs(parts.query)
            channel_id = parts.path[len(CHANNEL_PREFIX) :]
            key = query.get("key", [""])[0]
            direction = query.get("dir", [""])[0]
            if direction in ("read", "write") and self.channels.lookup(channel_id, key):
                return None
        return Rejection(404, "not found\n")

    async def _telemetry_socket(self, ws: ServerWebSocket) -> None:
        """``/otel``: telemetry frames only; text frames are ignored (spec §3.1). Its pongs
        and keepalive pings leave through a control queue (the engine sends nothing else)."""
        control = ControlFrames(ws.send)
        ws.on_control_frame(control.offer)
        close_code = 1000
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(control.run)

                def dead() -> None:
                    nonlocal close_code
                    close_code = KEEPALIVE_CLOSE_CODE
                    nursery.cancel_scope.cancel()

                with self.keepalive.watching(ws, control.offer, dead):
                    await self._read_telemetry(ws)
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await ws.close(close_code)

    async def _read_telemetry(self, ws: ServerWebSocket) -> None:
        try:
            while True:
                frame = await ws.receive()
                if isinstance(frame, bytes):
                    try:
                        message = protocol.decode(frame)
                    except (protocol.FrameRejected, protocol.UnknownMessageType):
                        continue
                    if isinstance(message, protocol.Telemetry):
                        self.dispatcher.telemetry(None, message)
        except WebSocketClosed:
            pass
        except Exception as exc:  # an oversized frame, a broken stream
            log.debug("/otel socket ended: %s", exc)

    async def _channel_socket(self, request: HandshakeRequest, ws: ServerWebSocket) -> None:
        parts = urlsplit(request.path)
        query = parse_qs(parts.query)
        channel = self.channels.lookup(parts.path[len(CHANNEL_PREFIX) :], query.get("key", [""])[0])
        if channel is None:  # removed between the handshake and now
            await ws.aclose()
            return
        await self.channels.serve(channel, query["dir"][0], ws, keepalive=self.keepalive)


def _pinger(conn: WorkerConnection) -> Callable[[bytes], None]:
    """Pings through the connection's outbox, in order with its other frames."""

    def send(frame: bytes) -> None:
        try:
            conn.try_deliver(frame)  # a full outbox skips the ping: the timeout will tell
        except MailboxClosed:
            pass

    return send


def _retire(conn: WorkerConnection) -> None:
    """The keepalive found the worker silent: close it (1011) and run its cleanup."""
    conn.close_code = KEEPALIVE_CLOSE_CODE
    conn.request_stop()
