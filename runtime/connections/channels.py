"""Streaming channels between workers (spec §7, ``engine::channels::create``).

A channel is a bounded buffer of frames with one writer socket and one reader socket on
``/ws/channels/<id>?key=...&dir=read|write``. The writer's frames reach the reader in
order, text and binary preserved; a full buffer stops reading from the writer
(backpressure); the reader gets a Close once the writer has closed and the buffer drained.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from typing import Any

import attrs
import trio

from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.connections.keepalive import (
    KEEPALIVE_CLOSE_CODE,
    ControlFrames,
    Keepalive,
    KeepaliveSettings,
)
from iii_trio.runtime.connections.quotas import QUOTA_EXCEEDED
from iii_trio.runtime.wire.websocket import (
    NORMAL_CLOSURE,
    ServerWebSocket,
    WebSocketClosed,
    binary_frame,
    text_frame,
)

log = logging.getLogger("iii_trio.channels")

DEFAULT_BUFFER = 64
MAX_BUFFER = 1024
UNCONNECTED_TTL_SECONDS = 300.0
# Channels the modules open (the RestApiModule's two per request): a pool of their own, so
# workers' channels (``max_worker_channels``, ``max_channels_per_worker``) never starve them.
MAX_CHANNELS = 10_000

Pipe = tuple[trio.MemorySendChannel[str | bytes], trio.MemoryReceiveChannel[str | bytes]]


@attrs.define(eq=False)
class Channel:
    id: str
    access_key: str
    buffer_size: int
    created_at: float
    owner: str | None = None
    # The worker whose quota it counts against (engine::channels::create); None: a module's.
    creator: str | None = None
    from_worker: bool = False  # in the workers' pool (else the modules')
    writer_taken: bool = False
    reader_taken: bool = False
    scopes: list[trio.CancelScope] = attrs.field(factory=list)  # the live sides
    on_writer: Callable[[], None] | None = None  # called when the writer side connects
    # The frame buffer, made when first used: the RestApiModule makes two channels per
    # request and most of them are never connected to.
    _pipe: Pipe | None = None
    _ended: bool = False

    @property
    def send(self) -> trio.MemorySendChannel[str | bytes]:
        return self._buffer()[0]

    @property
    def receive(self) -> trio.MemoryReceiveChannel[str | bytes]:
        return self._buffer()[1]

    def end(self) -> None:
        """No more frames will be written (without making a buffer that was never used)."""
        if self._pipe is None:
            self._ended = True
        else:
            self._pipe[0].close()

    def _buffer(self) -> Pipe:
        if self._pipe is None:
            self._pipe = trio.open_memory_channel[str | bytes](self.buffer_size)
            if self._ended:
                self._pipe[0].close()
        return self._pipe

    def ref(self, direction: str) -> dict[str, Any]:
        return {"channel_id": self.id, "access_key": self.access_key, "direction": direction}


class ChannelTable:
    """Every open channel, in two pools: the modules' (:data:`MAX_CHANNELS`) and the
    workers' (``max_worker_channels`` in all, ``max_channels_per_worker`` per creating
    connection; see :mod:`.quotas`). A worker's channels outlive it (spec §7: they have no
    owner) and count against the workers' pool until they end or expire."""

    def __init__(self, *, max_worker_channels: int = 10_000, per_worker: int = 1000) -> None:
        self.channels: dict[str, Channel] = {}
        self._created = trio.Event()  # wakes the expiry loop, which sleeps while none exist
        self.max_worker_channels = max_worker_channels
        self.per_worker = per_worker
        self.module_channels = 0
        self.worker_channels = 0
        self._by_creator: dict[str, int] = {}

    def create(self, buffer_size: int | None = None, owner: str | None = None) -> Channel:
        """A module's channel (RuntimeError when the modules' pool is full)."""
        if self.module_channels >= MAX_CHANNELS:
            raise RuntimeError(f"too many open channels (limit {MAX_CHANNELS})")
        self.module_channels += 1
        return self._make(buffer_size, owner)

    def create_for_worker(self, creator: str | None, buffer_size: int | None = None) -> Channel:
        """``engine::channels::create``: a channel from the workers' pool, counted against
        ``creator``'s quota (None: an engine-originated call, the pool alone)."""
        if self.worker_channels >= self.max_worker_channels:
            message = (
                f"too many open worker channels (max_worker_channels {self.max_worker_channels})"
            )
            raise InvocationError(QUOTA_EXCEEDED, message)
        held = self._by_creator.get(creator, 0) if creator is not None else 0
        if creator is not None and held >= self.per_worker:
            raise InvocationError(
                QUOTA_EXCEEDED,
                f"a worker connection may hold at most {self.per_worker} open channels "
                "(max_channels_per_worker)",
            )
        self.worker_channels += 1
        if creator is not None:
            self._by_creator[creator] = held + 1
        channel = self._make(buffer_size, None)
        channel.creator = creator
        channel.from_worker = True
        return channel

    def _make(self, buffer_size: int | None, owner: str | None) -> Channel:
        size = min(max(buffer_size or DEFAULT_BUFFER, 1), MAX_BUFFER)
        random = os.urandom(32)  # one system call for both the id and the key
        channel = Channel(
            id=_uuid4(random[:16]),
            access_key=_uuid4(random[16:]),
            buffer_size=size,
            created_at=trio.current_time(),
            owner=owner,
        )
        self.channels[channel.id] = channel
        self._created.set()
        return channel

    def lookup(self, channel_id: str, key: str) -> Channel | None:
        channel = self.channels.get(channel_id)
        if channel is None or not secrets.compare_digest(channel.access_key, key):
            return None
        return channel

    def remove(self, channel: Channel) -> None:
        if self.channels.get(channel.id) is channel:
            del self.channels[channel.id]
            self._uncount(channel)
        for scope in channel.scopes:
            scope.cancel()

    def _uncount(self, channel: Channel) -> None:
        if not channel.from_worker:
            self.module_channels -= 1
            return
        self.worker_channels -= 1
        creator = channel.creator
        if creator is not None:
            left = self._by_creator[creator] - 1
            if left:
                self._by_creator[creator] = left
            else:
                del self._by_creator[creator]

    def held_by(self, creator: str) -> int:
        """Open channels ``creator`` made with ``engine::channels::create``."""
        return self._by_creator.get(creator, 0)

    def owner_gone(self, owner: str) -> None:
        for channel in list(self.channels.values()):
            if channel.owner == owner:
                self.remove(channel)

    async def expire_forever(self, period: float = 30.0) -> None:
        while True:
            if not self.channels:  # an idle engine does not wake up for nothing
                await self._created.wait()
                self._created = trio.Event()
            await trio.sleep(period)
            cutoff = trio.current_time() - UNCONNECTED_TTL_SECONDS
            for channel in list(self.channels.values()):
                both = channel.writer_taken and channel.reader_taken
                if not both and channel.created_at < cutoff:
                    log.info("channel %s expired unconnected", channel.id)
                    self.remove(channel)

    async def serve(
        self,
        channel: Channel,
        direction: str,
        ws: ServerWebSocket,
        *,
        keepalive: Keepalive | None = None,
    ) -> None:
        """Run one side of a channel on an accepted socket until it ends; ``keepalive``
        closes a side whose peer stopped answering."""
        keepalive = keepalive or Keepalive(KeepaliveSettings(interval=0))
        taken = channel.writer_taken if direction == "write" else channel.reader_taken
        if taken:
            await _close(ws)  # each direction may be taken once
            return
        if direction == "write":
            channel.writer_taken = True
            if channel.on_writer is not None:
                channel.on_writer()
            side = _pump_writer(channel, ws, keepalive)
        else:
            channel.reader_taken = True
            side = _pump_reader(channel, ws, keepalive)
        with trio.CancelScope() as scope:
            channel.scopes.append(scope)
            await side
        if direction == "read":
            self.remove(channel)


async def _pump_writer(channel: Channel, ws: ServerWebSocket, keepalive: Keepalive) -> None:
    # The engine writes nothing to a writer but pongs and pings: a control queue does.
    control = ControlFrames(ws.send)
    ws.on_control_frame(control.offer)
    code = NORMAL_CLOSURE
    try:
        async with trio.open_nursery() as nursery:

            def dead() -> None:
                nonlocal code
                code = KEEPALIVE_CLOSE_CODE
                nursery.cancel_scope.cancel()

            nursery.start_soon(control.run)
            with keepalive.watching(ws, control.offer, dead):
                while True:
                    try:
                        message = await ws.receive()
                    except WebSocketClosed:
                        break
                    await channel.send.send(message)  # waits while the buffer is full
            nursery.cancel_scope.cancel()
    finally:
        channel.send.close()
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await ws.close(code)


async def _pump_reader(channel: Channel, ws: ServerWebSocket, keepalive: Keepalive) -> None:
    lock = trio.Lock()

    async def send(data: bytes) -> None:
        async with lock:
            await ws.send(data)

    async def drain_control() -> None:
        # Read the reader's socket only for pings and its close.
        try:
            while True:
                await ws.receive()
        except WebSocketClosed:
            nursery.cancel_scope.cancel()

    control = ControlFrames(send)  # pongs and pings, between the messages
    ws.on_control_frame(control.offer)
    code = NORMAL_CLOSURE

    def dead() -> None:
        nonlocal code
        code = KEEPALIVE_CLOSE_CODE
        nursery.cancel_scope.cancel()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain_control)
            nursery.start_soon(control.run)
            with keepalive.watching(ws, control.offer, dead):
                async for message in channel.receive:
                    if isinstance(message, str):
                        await send(text_frame(message.encode("utf-8")))
                    else:
                        await send(binary_frame(message))
            nursery.cancel_scope.cancel()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await ws.close(code)


def _uuid4(random: bytes) -> str:
    """A version-4 UUID string from 16 random bytes (a third of ``uuid.UUID``'s cost)."""
    octets = bytearray(random)
    octets[6] = (octets[6] & 0x0F) | 0x40  # version 4
    octets[8] = (octets[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = octets.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


async def _close(ws: ServerWebSocket) -> None:
    await ws.close(NORMAL_CLOSURE)
