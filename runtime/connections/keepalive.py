"""Keepalive on upgraded sockets: a peer that stops answering is closed.

A WebSocket whose peer vanished (a host powered off, a cable pulled, a NAT entry dropped)
or that never answers (a client that completed the upgrade and then went quiet for good)
otherwise holds its descriptor, its connection slot and its registrations forever. So each
port watches its sockets with one :class:`Keepalive` sweeper (one task per port, not one per
socket, so idle sockets stay cheap):

- a socket from which nothing arrived for ``keepalive_interval`` is sent a WebSocket Ping
  (every SDK and browser answers it; spec §3.4 allows the engine's own pings);
- if still nothing arrived ``keepalive_timeout`` after the ping, the socket is closed
  (``on_dead``). Any inbound byte counts as an answer, not only the Pong.

A socket the engine is not reading at the moment (its peer is backpressured, or a join is
being authorised) cannot show its answer; a socket with unread bytes waiting in the kernel
is therefore never judged dead. The sweep runs every quarter of the shorter setting, so a
silent peer is pinged after ``interval`` to ``1.25 * interval`` of silence and closed up to a
quarter later than ``timeout`` after that. ``keepalive_interval: 0`` turns it off.

:class:`ControlFrames` is the small ordered queue through which a socket without an outbox
of its own (``/otel``, the sides of a channel) sends its pings and pongs.
"""

from __future__ import annotations

import array
import fcntl
import logging
import termios
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import attrs
import trio

from iii_trio.runtime.wire import frames as ws_frames
from iii_trio.runtime.wire.websocket import WebSocket, frame

log = logging.getLogger("iii_trio.keepalive")

PING = frame(ws_frames.OP_PING, b"iii")
#: Control frames waiting on a socket without an outbox; more are dropped (its peer is not
#: reading, and the keepalive will tell).
CONTROL_BACKLOG = 16
#: Close code of a socket whose peer stopped answering (as the ``websockets`` library uses).
KEEPALIVE_CLOSE_CODE = 1011


@attrs.frozen
class KeepaliveSettings:
    """``keepalive_interval`` and ``keepalive_timeout``, in seconds; interval 0: off."""

    interval: float = 30.0
    timeout: float = 30.0

    @classmethod
    def from_ms(cls, interval_ms: int, timeout_ms: int) -> KeepaliveSettings:
        return cls(interval_ms / 1000, timeout_ms / 1000)

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    @property
    def sweep_period(self) -> float:
        return min(self.interval, self.timeout) / 4


@attrs.define(eq=False)
class _Watched:
    ws: WebSocket
    send_ping: Callable[[bytes], None]
    on_dead: Callable[[], None]
    seen: int  # bytes received at the last sweep that saw a change
    quiet_since: float
    pinged_at: float | None = None


class Keepalive:
    """One port's sweeper: :meth:`watching` adds a socket, :meth:`run` sweeps."""

    def __init__(self, settings: KeepaliveSettings) -> None:
        self.settings = settings
        self._watched: dict[int, _Watched] = {}
        self._added = trio.Event()
        self.closed_by_keepalive = 0

    @contextmanager
    def watching(
        self, ws: WebSocket, send_ping: Callable[[bytes], None], on_dead: Callable[[], None]
    ) -> Iterator[None]:
        """Watch ``ws`` for the block's duration. ``send_ping`` queues a frame in the
        socket's write order without waiting; ``on_dead`` ends the socket's handling."""
        if not self.settings.enabled:
            yield
            return
        key = id(ws)
        self._watched[key] = _Watched(
            ws, send_ping, on_dead, ws.bytes_received, trio.current_time()
        )
        self._added.set()
        try:
            yield
        finally:
            self._watched.pop(key, None)

    async def run(self) -> None:
        """Sweep forever (sleeping while nothing is watched, so an idle engine stays idle)."""
        if not self.settings.enabled:
            return
        while True:
            if not self._watched:
                await self._added.wait()
            self._added = trio.Event()
            await trio.sleep(self.settings.sweep_period)
            self.sweep(trio.current_time())

    def sweep(self, now: float) -> None:
        settings = self.settings
        for key, watched in list(self._watched.items()):
            received = watched.ws.bytes_received
            if received != watched.seen:
                watched.seen, watched.quiet_since, watched.pinged_at = received, now, None
            elif watched.pinged_at is None:
                if now - watched.quiet_since >= settings.interval:
                    watched.pinged_at = now
                    watched.send_ping(PING)
            elif now - watched.pinged_at >= settings.timeout:
                if _unread_bytes(watched.ws):  # it answered; the engine is not reading yet
                    watched.quiet_since, watched.pinged_at = now, None
                    continue
                del self._watched[key]
                self.closed_by_keepalive += 1
                log.info(
                    "keepalive: no answer for %.0f s after a ping; closing the socket",
                    now - watched.pinged_at,
                )
                watched.on_dead()

    @property
    def watched(self) -> int:
        return len(self._watched)


def _unread_bytes(ws: WebSocket) -> int:
    """Bytes that arrived on the socket and wait unread in the kernel (0 if not a socket)."""
    stream = ws.stream
    if not isinstance(stream, trio.SocketStream):
        return 0
    try:
        count = array.array("i", [0])
        fcntl.ioctl(stream.socket.fileno(), termios.FIONREAD, count, True)
    except (OSError, ValueError):
        return 0
    return count[0]


class ControlFrames:
    """An ordered, bounded queue of control frames (pings, pongs) for a socket without an
    outbox of its own, and the task that writes them with ``send`` (which must serialise
    with any other writer of the socket)."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        self._send = send
        self._in, self._out = trio.open_memory_channel[bytes](CONTROL_BACKLOG)

    def offer(self, control: bytes) -> None:
        """Queue a frame without waiting; dropped when the queue is full or closed."""
        try:
            self._in.send_nowait(control)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def run(self) -> None:
        """Write queued frames until cancelled or the socket breaks."""
        async for control in self._out:
            try:
                await self._send(control)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
