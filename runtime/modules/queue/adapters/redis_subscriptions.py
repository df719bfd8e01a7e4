"""Which functions this engine consumes from which topic, announced in Redis, where the
enqueue script fans messages out (see :mod:`.redis`).

Each (topic, function) bound here is a member ``<engine> <function id>`` of the topic's
``subs`` sorted set, scored with its expiry: renewed every TTL / 3, so the members of an
engine that crashed fade after the TTL, and removed when the last local binding of the
function goes or the engine stops. Announcing a subscription fans the topic's backlog out in
the same script, so a message is never held after a subscriber exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import trio

from iii_trio.runtime.modules.queue.adapters import redis_layout as layout
from iii_trio.runtime.modules.storage.redis import Arg, ReconnectingRedis, RedisError

TTL_MS = 15_000
BATCH = 500  # commands per pipelined write


class TopicSubscriptions:
    def __init__(
        self,
        redis: ReconnectingRedis,
        engine: str,
        *,
        released: Callable[[str], None],
        outage: Callable[[Exception], None],
    ) -> None:
        self.redis = redis
        self.engine = engine
        self._released = released  # messages of this topic were fanned out from its backlog
        self._outage = outage
        self.wanted: set[tuple[str, str]] = set()  # (topic, function) bound here
        self.registered: set[tuple[str, str]] = set()  # ... and announced in Redis
        self._changed = trio.Event()

    def add(self, topic: str, function_id: str) -> None:
        self.wanted.add((topic, function_id))
        self._changed.set()

    def remove(self, topic: str, function_id: str) -> None:
        self.wanted.discard((topic, function_id))
        self._changed.set()

    def forget_registrations(self) -> None:
        """Redis may have lost them (a restarted server): announce every one again now."""
        self.registered.clear()
        self._changed.set()

    def _member(self, function_id: str) -> str:
        return f"{self.engine} {function_id}"

    async def register(self, topic: str, function_id: str) -> None:
        keys = layout.QueueKeys(topic)
        released = await layout.SUBSCRIBE(
            self.redis, [keys.subs, keys.backlog], [topic, self._member(function_id), TTL_MS]
        )
        self.registered.add((topic, function_id))
        if released:
            self._released(topic)

    async def register_pending(self, topic: str) -> None:
        """Announce the topic's subscriptions made here a moment ago (before an enqueue
        through this engine, so it fans out to them as the builtin adapter would)."""
        for pair in self.wanted - self.registered:
            if pair[0] == topic:
                await self.register(*pair)

    async def run(self) -> None:
        """Keep the announced members equal to the wanted ones, renewed in time."""
        renew_at = -math.inf
        while True:
            self._changed = trio.Event()
            try:
                renew = trio.current_time() >= renew_at
                wanted = set(self.wanted)
                for topic, function_id in wanted if renew else wanted - self.registered:
                    await self.register(topic, function_id)
                for topic, function_id in self.registered - wanted:
                    member = self._member(function_id)
                    await self.redis.execute("ZREM", layout.QueueKeys(topic).subs, member)
                    self.registered.discard((topic, function_id))
                if renew:
                    renew_at = trio.current_time() + TTL_MS / 3000
            except RedisError as exc:
                self._outage(exc)
                renew_at = -math.inf
                await trio.sleep(self.redis.retry_seconds)
                continue
            with trio.move_on_at(renew_at):
                await self._changed.wait()

    async def withdraw_all(self) -> None:
        """Remove this engine's members (at shutdown; failures only logged by the caller)."""
        commands: list[Sequence[Arg]] = [
            ["ZREM", layout.QueueKeys(topic).subs, self._member(function_id)]
            for topic, function_id in self.registered
        ]
        self.registered.clear()
        for start in range(0, len(commands), BATCH):
            await self.redis.execute_many(commands[start : start + BATCH])
