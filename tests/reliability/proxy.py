"""A TCP proxy on trio for network faults between a worker and the engine.

    async with cutting_proxy(engine_port) as proxy:      # proxy.port for the worker's URL
        await proxy.cut(engine_side_delay=1.0)

``cut`` drops the worker side of every current connection at once (the worker sees its
socket end and reconnects through the proxy) while the engine side stays open, silently
swallowing what the engine sends, for ``engine_side_delay`` seconds before it is closed too:
the engine sees a half-open connection, as after a network drop where no FIN arrives.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

READ_SIZE = 65536


@attrs.define(eq=False)
class Pair:
    worker: trio.SocketStream
    engine: trio.SocketStream
    cut: trio.Event = attrs.field(factory=trio.Event)


class CuttingProxy:
    def __init__(self, engine_port: int, nursery: trio.Nursery) -> None:
        self.engine_port = engine_port
        self.port = 0
        self.pairs: list[Pair] = []
        self.accepted = 0
        self._nursery = nursery

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, worker: trio.SocketStream) -> None:
        self.accepted += 1
        try:
            engine = await trio.open_tcp_stream("127.0.0.1", self.engine_port)
        except OSError:
            await worker.aclose()
            return
        pair = Pair(worker, engine)
        self.pairs.append(pair)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pipe, pair, worker, engine, nursery)
                nursery.start_soon(self._pipe, pair, engine, worker, nursery)
        finally:
            if pair in self.pairs:
                self.pairs.remove(pair)
            with trio.CancelScope(shield=True):
                await worker.aclose()
                await engine.aclose()

    async def _pipe(
        self,
        pair: Pair,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        nursery: trio.Nursery,
    ) -> None:
        try:
            while True:
                data = await source.receive_some(READ_SIZE)
                if not data:
                    break
                if pair.cut.is_set():
                    continue  # the link is down: bytes go nowhere
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        if not pair.cut.is_set():
            nursery.cancel_scope.cancel()  # a clean end on one side ends the pair

    async def cut(self, *, engine_side_delay: float) -> int:
        """Drop every current connection's worker side now (RST), its engine side after
        ``engine_side_delay`` seconds. Returns how many connections were cut."""
        pairs = [pair for pair in self.pairs if not pair.cut.is_set()]
        for pair in pairs:
            pair.cut.set()
            # SO_LINGER 0: the worker gets a reset, as when a route dies mid-stream.
            pair.worker.socket.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            await pair.worker.aclose()
            self._nursery.start_soon(self._close_later, pair, engine_side_delay)
        return len(pairs)

    async def _close_later(self, pair: Pair, delay: float) -> None:
        await trio.sleep(delay)  # real time: a half-open window as a network drop leaves one
        await pair.engine.aclose()


@asynccontextmanager
async def cutting_proxy(engine_port: int) -> AsyncIterator[CuttingProxy]:
    async with trio.open_nursery() as nursery:
        proxy = CuttingProxy(engine_port, nursery)
        await nursery.start(proxy.serve)
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()
