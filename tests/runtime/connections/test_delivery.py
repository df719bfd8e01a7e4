"""Frames to a worker leave in the order they were delivered, whether the engine wrote them
straight to the socket or queued them for the connection's writer (runtime/connection.py)."""

from __future__ import annotations

import socket
from typing import Any

import orjson
import trio
import trio.testing

from iii_trio.runtime.engine import Engine
from iii_trio.runtime.wire import frames as ws_frames
from iii_trio.runtime.wire.websocket import text_frame
from tests.support.engine import worker_url
from tests.support.raw_worker import raw_worker

BIG = 8 * 2**20  # far more than the engine's send buffer plus a 64 KiB receive window
UPGRADE = (
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class SlowReader:
    """A worker on a bare socket with a small receive buffer, so the engine's writes to
    it block as soon as it stops reading."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.parser = ws_frames.FrameParser(2**26, masked=False)
        self.messages: list[Any] = []

    @classmethod
    async def connect(cls, port: int) -> SlowReader:
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # no autotuning
        await sock.connect(("127.0.0.1", port))
        reader = cls(trio.SocketStream(sock))
        await reader.stream.send_all(UPGRADE.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += await reader.stream.receive_some(65536)
        head, rest = data.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        reader.messages += [orjson.loads(m) for m in reader.parser.feed(rest)]
        return reader

    async def invoke(self, function_id: str, data: Any, invocation_id: str) -> None:
        frame = {"type": "invokefunction", "invocation_id": invocation_id}
        frame |= {"function_id": function_id, "data": data}
        await self.stream.send_all(ws_frames.masked_frame(ws_frames.OP_TEXT, orjson.dumps(frame)))

    async def read_until(self, count: int) -> None:
        with trio.fail_after(20):
            while len(self.messages) < count:
                data = await self.stream.receive_some(2**20)
                assert data, "the engine closed the connection"
                self.messages += [orjson.loads(m) for m in self.parser.feed(data)]


async def test_a_partly_written_frame_stays_ahead_of_later_frames(engine: Engine) -> None:
    # Real clock: the kernel's TCP flow control between the full socket buffers (window
    # updates, zero-window probes) runs on its own timers, which the autojump clock cannot see.
    async with raw_worker(worker_url(engine)) as callee:
        await callee.register("b::sized")

        async def serve() -> None:
            while True:
                invoke = await callee.expect("invokefunction", timeout=30)
                size = invoke["data"]["size"]
                await callee.answer(invoke, {"n": invoke["data"]["n"], "blob": "x" * size})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            with trio.fail_after(10):
                while "b::sized" not in engine.registry.functions:
                    await trio.sleep(0.01)
            reader = await SlowReader.connect(engine.port or 0)
            await reader.read_until(1)  # workerregistered
            conn = engine.connections[reader.messages[0]["worker_id"]]
            # One call in flight: its big result is written straight to the socket, which
            # takes only part of it; the rest waits in the outbox for the writer.
            await reader.invoke("b::sized", {"n": 1, "size": BIG}, "first")
            with trio.fail_after(20):
                while conn.outbox.statistics().peak == 0:
                    await trio.sleep(0.01)
            # Meanwhile the next result must queue behind it, not be written in between.
            await reader.invoke("b::sized", {"n": 2, "size": 10}, "second")
            with trio.fail_after(20):
                while "second" in {i.id for i in engine.router.live.values()}:
                    await trio.sleep(0.01)
            await reader.read_until(3)  # workerregistered, first, second
            nursery.cancel_scope.cancel()
    kinds = [(m["type"], m.get("invocation_id")) for m in reader.messages]
    assert kinds == [
        ("workerregistered", None),
        ("invocationresult", "first"),
        ("invocationresult", "second"),
    ]
    first = reader.messages[1]["result"]
    assert first["n"] == 1
    assert first["blob"] == "x" * BIG
    await reader.stream.aclose()


async def test_a_queued_frame_is_never_overtaken_by_a_direct_write(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as worker:
        conn = engine.connections[worker.worker_id]
        with trio.fail_after(5):
            while not conn._writer_idle:  # the writer has sent workerregistered
                await trio.sleep(0.01)
        busy: Any = [object(), object()]
        # No checkpoint from here on, so the writer cannot run in between.
        conn.assigned.update(busy)  # two calls in flight: frames queue for the writer
        assert conn.try_deliver(text_frame(b'{"type":"queued"}'))
        conn.assigned.difference_update(busy)  # quiet again, but the writer has not run
        assert conn.try_deliver(text_frame(b'{"type":"after"}'))
        assert [(await worker.recv())["type"] for _ in range(2)] == ["queued", "after"]
        # Once the writer has drained the outbox, a quiet connection writes directly.
        with trio.fail_after(5):
            while not conn._writer_idle:
                await trio.sleep(0.01)
        assert conn.try_deliver(text_frame(b'{"type":"direct"}'))
        assert conn._writer_idle  # written directly: nothing was handed to the writer
        assert (await worker.recv())["type"] == "direct"
