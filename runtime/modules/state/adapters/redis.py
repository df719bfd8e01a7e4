"""The state RedisAdapter: values in the Redis at ``redis_url`` (layout in
:class:`~iii_trio.runtime.modules.storage.kv.redis.RedisStore`), shared by every engine on
it. The connection is reopened after a loss; calls meanwhile answer ``<OP>_ERROR`` at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs

from iii_trio.runtime.modules.storage.kv import KvStore
from iii_trio.runtime.modules.storage.kv.redis import RedisStore
from iii_trio.runtime.modules.storage.redis import open_reconnecting


@attrs.frozen
class RedisAdapter:
    redis_url: str
    name = "redis"

    @asynccontextmanager
    async def open(self) -> AsyncIterator[KvStore]:
        async with open_reconnecting(self.redis_url, name="state") as redis:
            yield RedisStore(redis)  # nothing to close: the connection is closed here
