"""PubSubModule through a real engine with trio-SDK subscribers (spec/modules.md §7, D10)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from iii_trio.runtime.config.loading import ModuleEntry
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.pubsub.config import LocalPubSubConfig, PubSubConfig
from iii_trio.runtime.modules.storage.config import RedisAdapterConfig
from iii_trio.runtime.modules.storage.redis import open_redis
from iii_trio.sdk import III, InvocationError
from tests.support.clocks import backend_clock
from tests.support.engine import StartEngine, worker_url
from tests.support.redis_server import redis_server
from tests.support.waiting import wait_until


def pubsub_entry(redis_url: str | None) -> ModuleEntry:
    adapter = RedisAdapterConfig(redis_url=redis_url) if redis_url else LocalPubSubConfig()
    config = PubSubConfig(adapter=adapter)
    return ModuleEntry("pubsub", "modules::pubsub::PubSubModule", "modules[0]", config)


class Subscribers:
    """K trio-SDK workers, each with one ``subscribe`` binding on a topic."""

    def __init__(self) -> None:
        self.received: dict[str, list[Any]] = {}
        self.handles: dict[str, Any] = {}

    def add(self, engine: Engine, name: str, topic: str) -> III:
        worker = III(worker_url(engine), worker_name=name)
        self.received[name] = []

        @worker.function(id=f"{name}::on_message")
        async def on_message(data: Any) -> None:
            self.received[name].append(data)

        self.handles[name] = worker.register_trigger(
            "subscribe", f"{name}::on_message", {"topic": topic}
        )
        return worker


async def wait_for_bindings(engine: Engine, topic: str, count: int) -> None:
    module: Any = engine.modules["pubsub"]
    await wait_until(
        lambda: len(module.trigger.topics.get(topic, [])) == count,
        what=f"{count} subscriber(s) of {topic!r} are bound",
    )


async def wait_for_redis_subscribers(url: str, topic: str, count: int) -> None:
    async with open_redis(url) as redis:

        async def subscribed() -> bool:
            return bool((await redis.execute("PUBSUB", "NUMSUB", topic))[1] >= count)

        await wait_until(subscribed, what=f"redis counts {count} subscriber(s) of {topic!r}")


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.slow)])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def clock(backend: str) -> trio.testing.MockClock | None:
    return backend_clock(backend)


@pytest.fixture
async def setup(
    backend: str, start_engine: StartEngine, tmp_path: Path
) -> AsyncIterator[tuple[Engine, str | None]]:
    async with contextlib.AsyncExitStack() as stack:
        url = None
        if backend == "redis":
            url = await stack.enter_async_context(redis_server(tmp_path))
        yield await start_engine(modules=(pubsub_entry(url),)), url


async def test_fan_out_and_unsubscribe(
    setup: tuple[Engine, str | None], clock: trio.testing.MockClock | None
) -> None:
    engine, url = setup
    subscribers = Subscribers()
    workers = [subscribers.add(engine, f"s{n}", "audit") for n in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker.connect())
        publisher = await stack.enter_async_context(III(worker_url(engine)).connect())
        await wait_for_bindings(engine, "audit", 3)
        if url:
            await wait_for_redis_subscribers(url, "audit", 1)
        await publisher.trigger("publish", {"topic": "audit", "data": {"event": "login"}})
        await publisher.trigger("publish", {"topic": "other", "data": "nobody listens"})
        await wait_until(
            lambda: all(subscribers.received.values()), what="every subscriber receives one"
        )
        assert subscribers.received == {f"s{n}": [{"event": "login"}] for n in range(3)}

        subscribers.handles["s1"].unregister()  # leaves s0 and s2 subscribed
        await wait_for_bindings(engine, "audit", 2)
        await publisher.trigger("publish", {"topic": "audit", "data": 2})
        await wait_until(
            lambda: len(subscribers.received["s0"]) >= 2 and len(subscribers.received["s2"]) >= 2,
            what="s0 and s2 receive the second message",
        )
        await trio.sleep(0.2)  # a late delivery to s1 would have landed by now
    assert subscribers.received["s0"] == [{"event": "login"}, 2]
    assert subscribers.received["s2"] == [{"event": "login"}, 2]
    assert subscribers.received["s1"] == [{"event": "login"}]


async def test_bad_topics(
    setup: tuple[Engine, str | None], clock: trio.testing.MockClock | None
) -> None:
    engine, _ = setup
    async with III(worker_url(engine), worker_name="w").connect() as iii:
        with pytest.raises(InvocationError) as info:
            await iii.trigger("publish", {"topic": "", "data": 1})
        assert info.value.code == "topic_not_set"
        with pytest.raises(InvocationError) as info:
            await iii.trigger("publish", {"topic": 5, "data": 1})
        assert info.value.code == "deserialization_error"
        iii.register_trigger("subscribe", "w::fn", {"topic": ""})
        await iii.trigger("engine::functions::list", {})  # the binding frame went before it
    module: Any = engine.modules["pubsub"]
    assert module.trigger.topics == {}  # refused, not stored


@pytest.mark.slow  # starts redis-server
async def test_two_engines_on_one_redis_share_topics(
    start_engine: StartEngine, tmp_path: Path
) -> None:
    async with redis_server(tmp_path) as url:
        first = await start_engine(modules=(pubsub_entry(url),))
        second = await start_engine(modules=(pubsub_entry(url),))
        subscribers = Subscribers()
        on_first = subscribers.add(first, "a", "news")
        on_second = subscribers.add(second, "b", "news")
        async with on_first.connect(), on_second.connect():
            await wait_for_redis_subscribers(url, "news", 2)
            async with III(worker_url(first)).connect() as publisher:
                await publisher.trigger("publish", {"topic": "news", "data": {"n": 1}})
            await wait_until(
                lambda: subscribers.received["a"] and subscribers.received["b"],
                what="both engines' subscribers receive it",
            )
            await trio.sleep(0.2)  # real time (redis-server): a second delivery would be here
    assert subscribers.received == {"a": [{"n": 1}], "b": [{"n": 1}]}
