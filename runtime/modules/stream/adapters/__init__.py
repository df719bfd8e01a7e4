"""Where the StreamModule keeps its items and how its event messages reach the clients: the
adapter its config names, as one object the module talks to (:class:`StreamAdapter`), made
by :func:`create`.

- :mod:`.kv`: the KvStore adapter, items in memory or SQLite, events straight to this
  engine's clients;
- :mod:`.redis`: the RedisAdapter, items in Redis and events through a Redis channel, so
  every engine on that Redis tells its clients about every engine's changes.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import trio

from iii_trio.runtime.modules.storage.config import RedisAdapterConfig, StreamKvStoreConfig
from iii_trio.runtime.modules.storage.redis import RedisError
from iii_trio.runtime.modules.stream.items import StreamItems

#: Hands one event message to this engine's subscribed clients.
Deliver = Callable[[dict[str, Any]], None]

#: What :meth:`StreamAdapter.publish` raises when the message cannot go out.
PUBLISH_ERRORS = (RedisError, OSError)


class StreamAdapter(Protocol):
    @property
    def name(self) -> str:
        """What introspection shows as the module's ``adapter``."""
        ...

    @property
    def outbox_capacity(self) -> int:
        """Frames a client's outbox holds before the client is dropped as too slow."""
        ...

    def open(self) -> AbstractAsyncContextManager[StreamItems]:
        """The items' store, open while the block lasts (closed even when cancelled)."""
        ...

    async def follow(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run inside :meth:`open` for as long as the module runs: deliver the event messages
        other engines publish (nothing to do with the KvStore adapter)."""

    async def publish(self, message: dict[str, Any]) -> None:
        """Send an event message to every subscribed client (raises :data:`PUBLISH_ERRORS`)."""


def create(config: StreamKvStoreConfig | RedisAdapterConfig, deliver: Deliver) -> StreamAdapter:
    """The adapter of ``config`` (one this build has: the catalog checked it), delivering
    event messages for this engine's clients to ``deliver``."""
    if isinstance(config, RedisAdapterConfig):
        from iii_trio.runtime.modules.stream.adapters.redis import RedisAdapter

        return RedisAdapter(config.redis_url, deliver)
    from iii_trio.runtime.modules.stream.adapters.kv import KvAdapter

    return KvAdapter(config, deliver)
