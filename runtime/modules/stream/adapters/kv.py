"""The stream KvStore adapter: items in memory (lost when the engine stops) or in SQLite
(``store_method: file_based``, each write committed before its call returns), under scopes
``stream:<stream_name>:<group_id>`` (a StateModule may share the SQLite file). Event
messages go straight to this engine's clients."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from iii_trio.runtime.modules.storage.config import StreamKvStoreConfig
from iii_trio.runtime.modules.storage.kv import KvStore, closing
from iii_trio.runtime.modules.storage.kv.memory import MemoryStore
from iii_trio.runtime.modules.storage.kv.sqlite import SqliteStore
from iii_trio.runtime.modules.stream.adapters import Deliver
from iii_trio.runtime.modules.stream.items import StreamItems

log = logging.getLogger("iii_trio.stream")

SCOPE_PREFIX = "stream:"


@attrs.frozen
class KvAdapter:
    config: StreamKvStoreConfig
    deliver: Deliver

    @property
    def name(self) -> str:
        return self.config.store_method

    @property
    def outbox_capacity(self) -> int:
        return self.config.channel_size

    @asynccontextmanager
    async def open(self) -> AsyncIterator[StreamItems]:
        store: KvStore
        if self.config.store_method == "file_based":
            store = await SqliteStore.open(self.config.file_path)
        else:
            log.warning("stream: in_memory store, items are lost when the engine stops")
            store = MemoryStore()
        async with closing(store):
            yield StreamItems(store, SCOPE_PREFIX)

    async def follow(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()  # every event message starts on this engine

    async def publish(self, message: dict[str, Any]) -> None:
        self.deliver(message)
