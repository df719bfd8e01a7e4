"""A raw WebSocket worker for engine tests: JSON frames in and out, nothing hidden.

Built on trio-websocket, an implementation independent of the engine's own transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import trio
from trio_websocket import WebSocketConnection

from tests.support.ws import open_ws

RECEIVE_TIMEOUT = 10.0


class RawWorker:
    def __init__(self, ws: WebSocketConnection, hello: dict[str, Any]) -> None:
        self.ws = ws
        self.hello = hello
        self.worker_id: str = hello["worker_id"]
        self.reattach_token: str = hello["reattach_token"]

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_message(orjson.dumps(frame).decode())

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send_message(data)

    async def recv(self, timeout: float = RECEIVE_TIMEOUT) -> dict[str, Any]:
        with trio.fail_after(timeout):
            message = await self.ws.get_message()
        frame: dict[str, Any] = orjson.loads(message)
        return frame

    async def expect(self, frame_type: str, timeout: float = RECEIVE_TIMEOUT) -> dict[str, Any]:
        frame = await self.recv(timeout)
        assert frame["type"] == frame_type, f"expected {frame_type}, got {frame}"
        return frame

    async def register(self, function_id: str, **extra: Any) -> None:
        await self.send({"type": "registerfunction", "id": function_id, **extra})

    async def invoke(self, function_id: str, data: Any, invocation_id: str) -> None:
        await self.send(
            {
                "type": "invokefunction",
                "invocation_id": invocation_id,
                "function_id": function_id,
                "data": data,
            }
        )

    async def call(
        self, function_id: str, data: Any = None, *, invocation_id: str | None = None
    ) -> dict[str, Any]:
        """A sync call; returns the ``invocationresult`` frame."""
        import uuid

        invocation_id = invocation_id or str(uuid.uuid4())
        await self.invoke(function_id, data, invocation_id)
        frame = await self.expect("invocationresult")
        assert frame["invocation_id"] == invocation_id
        return frame

    async def answer(self, invoke: dict[str, Any], result: Any = None, **extra: Any) -> None:
        frame = {
            "type": "invocationresult",
            "invocation_id": invoke["invocation_id"],
            "function_id": invoke["function_id"],
            **extra,
        }
        if result is not None:
            frame["result"] = result
        await self.send(frame)

    async def serve_echo(self, count: int) -> None:
        """Answer ``count`` invocations with their input."""
        for _ in range(count):
            invoke = await self.expect("invokefunction")
            await self.answer(invoke, invoke["data"])


@asynccontextmanager
async def raw_worker(url: str, **kwargs: Any) -> AsyncIterator[RawWorker]:
    async with open_ws(url, **kwargs) as ws:
        with trio.fail_after(RECEIVE_TIMEOUT):
            hello = orjson.loads(await ws.get_message())
        assert hello["type"] == "workerregistered", hello
        yield RawWorker(ws, hello)
