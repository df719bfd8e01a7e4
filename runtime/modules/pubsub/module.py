"""PubSubModule (``modules::pubsub::PubSubModule``, ``iii-pubsub``; spec/modules.md §7, D10).

``publish {topic, data}`` hands ``data`` to every ``subscribe`` binding of the topic, each in
an engine-originated invocation of its own: at most once, no retries, no backlog. With the
RedisAdapter a publish goes to the Redis channel ``<topic>`` and every engine delivers what
it receives to its own bindings, so several engines share topics (this engine's own
publishes come back the same way, so each binding gets a message once).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import orjson
import trio

from iii_trio.runtime.calls import inputs
from iii_trio.runtime.calls.invocation import CallContext, LocalHandler
from iii_trio.runtime.modules.base import EngineModule, TopicMessage
from iii_trio.runtime.modules.pubsub.config import PubSubConfig
from iii_trio.runtime.modules.storage.config import RedisAdapterConfig
from iii_trio.runtime.modules.storage.redis import (
    ReconnectingRedis,
    RedisConnectionError,
    RedisSubscription,
    open_reconnecting,
    open_subscription,
)

if TYPE_CHECKING:
    from iii_trio.runtime.calls.registry import Binding, EngineTriggerType
    from iii_trio.runtime.config.loading import ModuleEntry
    from iii_trio.runtime.modules.context import ModuleContext

log = logging.getLogger("iii_trio.pubsub")

# Pause before the Redis subscriber reconnects after losing its connection.
REDIS_RETRY_SECONDS = 1.0


def create(ctx: ModuleContext, entry: ModuleEntry) -> PubSubModule:
    assert isinstance(entry.config, PubSubConfig)
    adapter = entry.config.adapter
    redis_url = adapter.redis_url if isinstance(adapter, RedisAdapterConfig) else None
    return PubSubModule(ctx, redis_url)


@attrs.frozen(kw_only=True)
class SubscribeTriggerConfig:
    """A ``subscribe`` binding: ``{topic}`` (any other config lacks the topic)."""

    RULES: ClassVar[inputs.Rules] = inputs.Rules(accepts="anything")
    topic: str = inputs.field(
        missing="subscribe trigger needs a non-empty string 'topic'",
        wrong="subscribe trigger needs a non-empty string 'topic'",
        blank_is_missing=True,
    )


class SubscribeTrigger:
    """The ``subscribe`` trigger type: config ``{topic}``, bindings grouped by topic."""

    id = "subscribe"
    description = "Receives the data published on a topic"

    def __init__(self, on_topics_changed: Any) -> None:
        self.topics: dict[str, list[Binding]] = {}
        self._changed = on_topics_changed

    def bind(self, binding: Binding) -> None:
        topic = inputs.structure_config(binding.config, SubscribeTriggerConfig).topic
        bindings = self.topics.setdefault(topic, [])
        bindings.append(binding)
        if len(bindings) == 1:
            self._changed()

    def unbind(self, binding: Binding) -> None:
        for topic, bindings in list(self.topics.items()):
            if binding in bindings:
                bindings.remove(binding)  # only this binding: the others keep the topic
                if not bindings:
                    del self.topics[topic]
                    self._changed()


class PubSubModule(EngineModule):
    def __init__(self, ctx: ModuleContext, redis_url: str | None) -> None:
        super().__init__(ctx)
        self.redis_url = redis_url
        self.trigger = SubscribeTrigger(self._topics_changed)
        self._redis: ReconnectingRedis | None = None
        self._topics_changed_event = trio.Event()
        self.published = 0
        self.delivered = 0

    def functions(self) -> dict[str, tuple[LocalHandler, str]]:
        return {"publish": (self.publish, "Publish data to every subscriber of a topic")}

    def trigger_types(self) -> list[EngineTriggerType]:
        return [self.trigger]

    def introspect(self) -> dict[str, Any]:
        return {
            "adapter": "redis" if self.redis_url else "local",
            "topics": len(self.trigger.topics),
            "subscriptions": sum(map(len, self.trigger.topics.values())),
            "published": self.published,
            "delivered": self.delivered,
        }

    async def serve(self, task_status: trio.TaskStatus[Any]) -> None:
        if self.redis_url is None:
            await super().serve(task_status)
            return
        async with contextlib.AsyncExitStack() as stack:
            self._redis = await stack.enter_async_context(
                open_reconnecting(self.redis_url, name="pubsub")
            )
            task_status.started()
            while True:
                try:
                    await self._follow_redis(self.redis_url)
                except (RedisConnectionError, OSError) as exc:
                    log.warning("pubsub: Redis subscription lost (%s); retrying", exc)
                await trio.sleep(REDIS_RETRY_SECONDS)

    async def publish(self, data: Any, ctx: CallContext) -> Any:
        published = inputs.structure("publish", data, TopicMessage)
        topic, message = published.topic, published.data
        self.published += 1
        if self._redis is not None:
            await self._redis.execute("PUBLISH", topic, orjson.dumps(message))
        else:
            self._deliver(topic, message)
        return None

    def _deliver(self, topic: str, message: Any) -> None:
        for binding in list(self.trigger.topics.get(topic, ())):
            self.delivered += 1
            self.ctx.fire(binding.function_id, message)

    # --- Redis: one subscription connection following the set of bound topics ---------------

    def _topics_changed(self) -> None:
        self._topics_changed_event.set()

    async def _follow_redis(self, url: str) -> None:
        async with open_subscription(url) as subscription, trio.open_nursery() as nursery:
            nursery.start_soon(self._sync_topics, subscription)
            while True:
                channel, raw = await subscription.receive()
                try:
                    message = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    log.warning("pubsub: message on %r is not JSON; dropped", channel)
                    continue
                self._deliver(channel, message)

    async def _sync_topics(self, subscription: RedisSubscription) -> None:
        subscribed: set[str] = set()
        while True:
            wanted = set(self.trigger.topics)
            if wanted - subscribed:
                await subscription.subscribe(*sorted(wanted - subscribed))
            if subscribed - wanted:
                await subscription.unsubscribe(*sorted(subscribed - wanted))
            subscribed = wanted
            await self._topics_changed_event.wait()
            self._topics_changed_event = trio.Event()
