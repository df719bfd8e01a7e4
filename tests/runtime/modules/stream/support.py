"""Helpers for the StreamModule tests: a module entry and a real WebSocket stream client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import trio
from trio_websocket import WebSocketConnection

from iii_trio.runtime.config.loading import ModuleEntry
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.storage.config import RedisAdapterConfig, StreamKvStoreConfig
from iii_trio.runtime.modules.stream.config import StreamConfig
from tests.support.ws import open_ws


def stream_entry(
    store_method: str = "in_memory", path: Path | None = None, redis_url: str = "", **config: Any
) -> ModuleEntry:
    adapter: StreamKvStoreConfig | RedisAdapterConfig
    if store_method == "redis":
        adapter = RedisAdapterConfig(redis_url=redis_url)
    else:
        adapter = StreamKvStoreConfig(
            store_method=store_method,  # type: ignore[arg-type]
            file_path=str(path or "unused.db"),
            channel_size=config.pop("channel_size", 256),
        )
    settings = StreamConfig(**{"port": 0, "host": "127.0.0.1", "adapter": adapter, **config})
    return ModuleEntry("stream", "modules::stream::StreamModule", "modules[0]", settings)


def stream_port(engine: Engine) -> int:
    module: Any = engine.modules["stream"]
    port: int = module.port
    return port


class Client:
    """A stream client on a real WebSocket (trio-websocket)."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws

    async def join(
        self, subscription_id: str, stream: str, group: str, item: str | None = None
    ) -> None:
        data = {
            "subscriptionId": subscription_id,
            "streamName": stream,
            "groupId": group,
            "id": item,
        }
        await self.ws.send_message(orjson.dumps({"type": "join", "data": data}).decode())

    async def leave(
        self, subscription_id: str, stream: str, group: str, item: str | None = None
    ) -> None:
        data = {
            "subscriptionId": subscription_id,
            "streamName": stream,
            "groupId": group,
            "id": item,
        }
        await self.ws.send_message(orjson.dumps({"type": "leave", "data": data}).decode())

    async def receive(self, seconds: float = 10) -> dict[str, Any]:
        with trio.fail_after(seconds):
            message: dict[str, Any] = orjson.loads(await self.ws.get_message())
        return message

    async def events(self, count: int) -> list[tuple[str | None, dict[str, Any]]]:
        """The next ``count`` messages as (item id, event), after checking their envelope."""
        out = []
        for _ in range(count):
            message = await self.receive()
            assert message["type"] == "stream"
            assert isinstance(message["timestamp"], int)
            out.append((message["id"], message["event"]))
        return out


@asynccontextmanager
async def stream_client(
    port: int, path: str = "/", headers: dict[str, str] | None = None
) -> AsyncIterator[Client]:
    extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    async with open_ws(f"ws://127.0.0.1:{port}{path}", extra_headers=extra) as ws:
        yield Client(ws)
