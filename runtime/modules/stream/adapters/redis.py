"""The stream RedisAdapter: items in the Redis at ``redis_url`` (a
:class:`~iii_trio.runtime.modules.storage.kv.redis.RedisStore` with key prefix ``stream``
and scope ``<stream_name>:<group_id>``, so the hash is ``stream:<stream_name>:<group_id>``),
event messages through the Redis channel :data:`CHANNEL`, so every engine on that Redis
delivers every engine's changes to its own clients (this engine's own events come back the
same way, so each client gets them once).

The item connection is reopened after a loss (calls meanwhile answer ``STREAM_*_ERROR``);
the subscription is retried every :data:`RETRY_SECONDS`. No Redis at startup fails the
module.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import trio

from iii_trio.runtime.modules.storage.kv import closing
from iii_trio.runtime.modules.storage.kv.redis import RedisStore
from iii_trio.runtime.modules.storage.redis import (
    ReconnectingRedis,
    RedisConnectionError,
    open_reconnecting,
    open_subscription,
)
from iii_trio.runtime.modules.stream.adapters import Deliver
from iii_trio.runtime.modules.stream.items import StreamItems
from iii_trio.runtime.modules.stream.messages import is_event_message

log = logging.getLogger("iii_trio.stream")

# Per-client outbox (the KvStore adapter's `channel_size` default).
CLIENT_OUTBOX = 256
# The Redis pub/sub channel carrying event messages between engines (as the reference).
CHANNEL = "stream::events"
# Pause before the subscriber reconnects after losing its connection.
RETRY_SECONDS = 1.0


class RedisAdapter:
    name = "redis"
    outbox_capacity = CLIENT_OUTBOX

    def __init__(self, redis_url: str, deliver: Deliver) -> None:
        self.redis_url = redis_url
        self.deliver = deliver
        self._redis: ReconnectingRedis | None = None

    @asynccontextmanager
    async def open(self) -> AsyncIterator[StreamItems]:
        async with open_reconnecting(self.redis_url, name="stream") as redis:
            self._redis = redis
            async with closing(RedisStore(redis, prefix="stream")) as store:
                yield StreamItems(store, "")

    async def publish(self, message: dict[str, Any]) -> None:
        if self._redis is None:
            return  # not open yet: no client can have subscribed
        await self._redis.execute("PUBLISH", CHANNEL, orjson.dumps(message))

    async def follow(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver every engine's event messages to this engine's clients."""
        started = False
        while True:
            try:
                async with open_subscription(self.redis_url) as subscription:
                    await subscription.subscribe(CHANNEL)
                    if not started:
                        task_status.started()
                        started = True
                    while True:
                        _, raw = await subscription.receive()
                        self._received(raw)
            except (RedisConnectionError, OSError) as exc:
                if not started:
                    raise  # no Redis at startup: the module fails to start
                log.warning("stream: Redis subscription lost (%s); retrying", exc)
            await trio.sleep(RETRY_SECONDS)

    def _received(self, raw: bytes) -> None:
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            message = None
        if not is_event_message(message):
            log.warning("stream: a message on %s is not a stream event; dropped", CHANNEL)
            return
        self.deliver(message)
