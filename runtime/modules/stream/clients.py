"""The stream client WebSocket port (spec/modules.md §5.4; default 3112, path ``/`` only).

Each client connection runs a reader (this module's handler task) and a writer with a
bounded outbox of :attr:`ClientServer.outbox_capacity` frames (the KvStore adapter's
``channel_size``, default 256). A client that falls that far behind is dropped (its socket
closed at once) rather than buffered without bound; it may reconnect and join again, and
its join sync brings it up to date. Join and leave messages of one client are handled one
after another, in the order received.

A subscription is indexed before its sync read, and changes that arrive while the read runs
are held and sent right after the sync, so a client sees the sync first and then every
later change in order (a change that raced the read may show up in both).

The port is inside the engine's trust boundary (issue 16 item 6): every accepted socket
passes the port's gate first (descriptor reserve, protected mode, ``max_connections`` and
``max_connections_per_address``; runtime/connections/admission.py), the upgrade needs the
engine's ``auth_token`` as the worker port does (401), and the ``auth_function`` guard fails
closed: a function that raises refuses the client (401), one that is not registered or does
not answer in time refuses it too (503). Upgraded sockets are watched by the keepalive, and
a client may hold at most ``max_subscriptions_per_client`` subscriptions.
"""

from __future__ import annotations

import logging
import socket
import uuid
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import attrs
import orjson
import trio

from iii_trio.runtime.connections.access import AccessPolicy
from iii_trio.runtime.connections.admission import PortGate, peer_address
from iii_trio.runtime.connections.keepalive import (
    KEEPALIVE_CLOSE_CODE,
    Keepalive,
    KeepaliveSettings,
)
from iii_trio.runtime.modules.stream.messages import (
    ClientRequest,
    event_message,
    parse_client_request,
)
from iii_trio.runtime.wire.handshake import HandshakeFailed, HandshakeRequest, Rejection, accept
from iii_trio.runtime.wire.websocket import (
    MessageTooBig,
    ServerWebSocket,
    WebSocketClosed,
    text_frame,
)

log = logging.getLogger("iii_trio.stream")

# Bound on reading the upgrade request and the auth function call together.
HANDSHAKE_TIMEOUT_SECONDS = 10.0
# Largest client message (clients send only small join / leave messages).
CLIENT_MAX_MESSAGE_SIZE = 1024 * 1024
# How long a closing client may take to flush the close frame.
CLOSE_FLUSH_SECONDS = 2.0
# Close code for a client past ``max_subscriptions_per_client`` (policy violation).
POLICY_VIOLATION = 1008


class Refused(Exception):
    """The auth function refused a client: the upgrade is answered with ``rejection``."""

    def __init__(self, rejection: Rejection, reason: str) -> None:
        super().__init__(reason)
        self.rejection = rejection


class ClientHost(Protocol):
    """What the server needs from the StreamModule."""

    async def authenticate(self, info: dict[str, Any]) -> Any:
        """The auth function's context for a new connection (None without one);
        :class:`Refused` when the client may not connect."""

    async def join_allowed(self, payload: dict[str, Any]) -> bool:
        """Call every ``stream:join`` binding; False if one answered unauthorized, failed
        or did not answer (guards fail closed)."""

    async def left(self, payload: dict[str, Any]) -> None:
        """Call every ``stream:leave`` binding."""

    async def sync_data(self, request: ClientRequest) -> tuple[bool, Any]:
        """(True, the item or the group's items) or (False, None) when the read failed."""


@attrs.define(eq=False)
class Subscription:
    client: StreamClient
    subscription_id: str
    stream_name: str
    group_id: str
    item_id: str | None
    # Frames held while the join's sync read runs; None once the sync is sent.
    held: list[bytes] | None = attrs.field(factory=list)

    @property
    def group(self) -> tuple[str, str]:
        return (self.stream_name, self.group_id)


class StreamClient:
    def __init__(self, ws: ServerWebSocket, addr: str, context: Any, capacity: int) -> None:
        self.id = str(uuid.uuid4())
        self.ws = ws
        self.addr = addr
        self.context = context
        self.capacity = capacity
        self.subscriptions: dict[str, Subscription] = {}
        self._out, self._in = trio.open_memory_channel[bytes](capacity)
        self.cancel_scope = trio.CancelScope()
        self.dropped = False

    def post(self, frame: bytes) -> None:
        """Queue a frame; a full outbox drops the client (see the module docstring)."""
        if self.dropped:
            return
        try:
            self._out.send_nowait(frame)
        except trio.WouldBlock:
            self.drop()
        except trio.ClosedResourceError:
            pass

    def post_control(self, frame: bytes) -> None:
        try:
            self._out.send_nowait(frame)
        except (trio.WouldBlock, trio.ClosedResourceError):
            pass  # a pong for a peer that is not reading anyway

    def drop(self) -> None:
        if not self.dropped:
            self.dropped = True
            log.warning(
                "stream: client %s fell %d messages behind; dropped", self.addr, self.capacity
            )
            self.cancel_scope.cancel()

    async def write_loop(self) -> None:
        async for frame in self._in:
            try:
                await self.ws.send(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.cancel_scope.cancel()  # the reader would see the drop too
                return

    def close_outbox(self) -> None:
        self._out.close()


class ClientServer:
    def __init__(
        self,
        host: ClientHost,
        *,
        outbox_capacity: int,
        with_auth: bool,
        access: AccessPolicy,
        gate: PortGate,
        keepalive: KeepaliveSettings,
        max_subscriptions: int,
    ) -> None:
        self.host = host
        self.outbox_capacity = outbox_capacity
        self.with_auth = with_auth
        self.access = access
        self.gate = gate
        self.keepalive = Keepalive(keepalive)
        self.max_subscriptions = max_subscriptions
        self.clients: set[StreamClient] = set()
        self.index: dict[tuple[str, str], list[Subscription]] = {}
        self.dropped_clients = 0
        self.refused_clients = 0  # by the token or the auth function

    # --- delivery ----------------------------------------------------------------------------

    def deliver(self, message: dict[str, Any]) -> None:
        """Send an event message to every matching subscription (one copy each)."""
        subscriptions = self.index.get((message["streamName"], message["groupId"]))
        if not subscriptions:
            return
        frame = text_frame(orjson.dumps(message))
        item_id = message["id"]
        for subscription in list(subscriptions):
            if subscription.item_id is not None and subscription.item_id != item_id:
                continue
            if subscription.held is None:
                subscription.client.post(frame)
            elif len(subscription.held) < self.outbox_capacity:
                subscription.held.append(frame)
            else:
                subscription.client.drop()

    @property
    def subscription_count(self) -> int:
        return sum(map(len, self.index.values()))

    def _add(self, subscription: Subscription) -> None:
        client = subscription.client
        previous = client.subscriptions.get(subscription.subscription_id)
        if previous is not None:
            self._remove(previous)
        client.subscriptions[subscription.subscription_id] = subscription
        self.index.setdefault(subscription.group, []).append(subscription)

    def _remove(self, subscription: Subscription) -> None:
        client = subscription.client
        if client.subscriptions.get(subscription.subscription_id) is subscription:
            del client.subscriptions[subscription.subscription_id]
        subscriptions = self.index.get(subscription.group, [])
        if subscription in subscriptions:
            subscriptions.remove(subscription)
            if not subscriptions:
                del self.index[subscription.group]

    # --- the port ----------------------------------------------------------------------------

    async def serve(
        self, host: str, port: int, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()[1]
        log.info("stream: clients connect to ws://%s:%s/", host, bound)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.keepalive.run)
            task_status.started(bound)
            await trio.serve_listeners(self._handle, listeners)

    def _decide(self, request: HandshakeRequest) -> Rejection | None:
        if urlsplit(request.path).path != "/":
            return Rejection(404, "not found\n")
        rejection = self.access.token_refusal(request)
        if rejection is not None:
            self.refused_clients += 1
        return rejection

    async def _handle(self, stream: trio.SocketStream) -> None:
        peer, peer_port = peer_address(stream)
        rejection = self.gate.screen(stream, peer, self.access.peer_refusal)
        if rejection is not None:
            await self.gate.refuse(stream, rejection)
            return
        with self.gate.admitted(peer):
            await self._serve(stream, f"{peer}:{peer_port}" if peer_port else peer)

    async def _serve(self, stream: trio.SocketStream, addr: str) -> None:
        try:
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        context: Any = None

        async def authenticate(request: HandshakeRequest) -> Rejection | None:
            nonlocal context
            try:
                context = await self.host.authenticate(_auth_input(request, addr))
            except Refused as refused:
                self.refused_clients += 1
                log.info("stream: client %s refused: %s", addr, refused)
                return refused.rejection
            return None

        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT_SECONDS):
                ws, _ = await accept(
                    stream,
                    self._decide,
                    max_message_size=CLIENT_MAX_MESSAGE_SIZE,
                    before_accept=authenticate if self.with_auth else None,
                )
        except (HandshakeFailed, trio.TooSlowError, trio.BrokenResourceError, OSError) as exc:
            log.debug("stream: handshake from %s failed: %s", addr, exc)
            await stream.aclose()
            return
        client = StreamClient(ws, addr, context, self.outbox_capacity)
        try:
            await self._run_client(client)
        except Exception:
            # Contained here: one client's failure must not stop the port for the others.
            log.exception("stream: client %s failed", addr)

    async def _run_client(self, client: StreamClient) -> None:
        self.clients.add(client)
        client.ws.on_control_frame(client.post_control)
        close_code = 1000

        def dead() -> None:
            nonlocal close_code
            close_code = KEEPALIVE_CLOSE_CODE
            client.cancel_scope.cancel()

        try:
            with client.cancel_scope, self.keepalive.watching(client.ws, client.post_control, dead):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(client.write_loop)
                    close_code = await self._read_loop(client)
                    nursery.cancel_scope.cancel()
        finally:
            self.clients.discard(client)
            remaining = list(client.subscriptions.values())
            for subscription in remaining:
                self._remove(subscription)
            client.close_outbox()
            with trio.CancelScope(shield=True):
                if client.dropped:
                    self.dropped_clients += 1
                    await client.ws.aclose()  # it is not reading: no closing handshake
                else:
                    with trio.move_on_after(CLOSE_FLUSH_SECONDS):
                        await client.ws.close(close_code)
                    await client.ws.aclose()
        # Disconnect: every remaining subscription gets leave handling (spec §5.4).
        for subscription in remaining:
            request = ClientRequest(
                "leave",
                subscription.subscription_id,
                subscription.stream_name,
                subscription.group_id,
                subscription.item_id,
            )
            await self.host.left(request.payload(client.context))

    async def _read_loop(self, client: StreamClient) -> int:
        """Handle the client's messages until it goes; the close code to answer with."""
        while True:
            try:
                frame = await client.ws.receive()
            except WebSocketClosed as closed:
                return 1000 if closed.code in (1005, 1006) else closed.code
            except MessageTooBig:
                return 1009
            try:
                request = parse_client_request(orjson.loads(frame))
            except orjson.JSONDecodeError:
                request = None
            if request is None:
                continue  # blank or invalid messages are ignored
            if request.type == "join":
                known = request.subscription_id in client.subscriptions
                if not known and len(client.subscriptions) >= self.max_subscriptions:
                    log.warning(
                        "stream: client %s joined more than %d subscriptions "
                        "(max_subscriptions_per_client); closing it with 1008",
                        client.addr,
                        self.max_subscriptions,
                    )
                    return POLICY_VIOLATION
                await self._join(client, request)
            else:
                await self.host.left(request.payload(client.context))
                previous = client.subscriptions.get(request.subscription_id)
                if previous is not None:
                    self._remove(previous)

    async def _join(self, client: StreamClient, request: ClientRequest) -> None:
        if not await self.host.join_allowed(request.payload(client.context)):
            event = {"type": "unauthorized"}
            message = event_message(request.stream_name, request.group_id, request.item_id, event)
            client.post(text_frame(orjson.dumps(message)))
            return
        subscription = Subscription(
            client, request.subscription_id, request.stream_name, request.group_id, request.item_id
        )
        self._add(subscription)
        ok, data = await self.host.sync_data(request)
        if ok:
            event = {"type": "sync", "data": data}
            message = event_message(request.stream_name, request.group_id, request.item_id, event)
            client.post(text_frame(orjson.dumps(message)))
        held, subscription.held = subscription.held or [], None
        for frame in held:
            client.post(frame)

    def introspect(self) -> dict[str, int]:
        return {
            "clients": len(self.clients),
            "subscriptions": self.subscription_count,
            "clients_dropped": self.dropped_clients,
            "clients_refused": self.refused_clients + self.gate.refused,
            "closed_by_keepalive": self.keepalive.closed_by_keepalive,
        }


def _auth_input(request: HandshakeRequest, addr: str) -> dict[str, Any]:
    headers: dict[str, str] = {}
    for name, value in request.headers:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    parts = urlsplit(request.path)
    return {
        "headers": headers,
        "path": parts.path,
        "query_params": parse_qs(parts.query, keep_blank_values=True),
        "addr": addr,
    }
