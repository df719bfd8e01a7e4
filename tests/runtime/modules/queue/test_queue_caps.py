"""The queue's caps hold under concurrency (issue 16, item 10): enqueues started at once are
checked and their room reserved before their first await, and a DLQ drops its oldest dead
letters beyond its cap (counted in introspection).

Before the fix 40 topics x 10,010 concurrent enqueues were all accepted past the backlog
cap (the check came before the SQLite write, the append after it) and held messages were
outside the job cap; the builtin DLQ had no cap. The caps here are set small through the
config so every race window is crossed many times. ``file_based`` puts a real SQLite write
(a worker thread) between check and commit, so those tests run on the real clock.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.calls.registry import Binding
from iii_trio.runtime.config.loading import ModuleEntry
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.queue.config import BuiltinQueueConfig, QueueConfig, RedisQueueConfig
from tests.runtime.modules.queue.support import Handler, call, subscribe
from tests.support.clocks import backend_clock
from tests.support.engine import StartEngine
from tests.support.redis_server import redis_server
from tests.support.waiting import wait_until

STORES = ["in_memory", "file_based"]


def builtin_entry(store_method: str, path: Path, **adapter: Any) -> ModuleEntry:
    settings = BuiltinQueueConfig(
        store_method=store_method,  # type: ignore[arg-type]
        file_path=str(path / "queue.db"),
        **adapter,
    )
    config = QueueConfig(adapter=settings)
    return ModuleEntry("queue", "modules::queue::QueueModule", "modules[0]", config)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def clock(store: str) -> trio.testing.MockClock | None:
    return backend_clock(store)


async def enqueue_at_once(engine: Engine, messages: list[tuple[str, Any]]) -> Counter[str]:
    """Start one ``enqueue`` per (topic, data) at the same moment; outcomes by code
    (``ok`` for an accepted one)."""
    outcomes: Counter[str] = Counter()
    start = trio.Event()

    async def enqueue(topic: str, data: Any) -> None:
        await start.wait()
        try:
            await call(engine, "enqueue", {"topic": topic, "data": data})
        except InvocationError as exc:
            outcomes[exc.code] += 1
        else:
            outcomes["ok"] += 1

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for topic, data in messages:
                nursery.start_soon(enqueue, topic, data)
            await trio.testing.wait_all_tasks_blocked()
            start.set()
    return outcomes


def queue_status(engine: Engine) -> dict[str, Any]:
    status: dict[str, Any] = engine.modules["queue"].introspect()
    return status


async def test_concurrent_enqueues_never_pass_the_backlog_cap(
    start_engine: StartEngine, tmp_path: Path, store: str, clock: trio.testing.MockClock | None
) -> None:
    entry = builtin_entry(store, tmp_path, max_backlog_per_topic=50)
    engine = await start_engine(modules=(entry,))
    topics = [f"t{n}" for n in range(8)]
    outcomes = await enqueue_at_once(engine, [(t, n) for t in topics for n in range(60)])
    assert outcomes == {"ok": 8 * 50, "queue_full": 8 * 10}
    assert queue_status(engine)["backlog"] == dict.fromkeys(topics, 50)
    if store == "file_based":
        with sqlite3.connect(tmp_path / "queue.db") as db:
            assert db.execute("SELECT COUNT(*) FROM backlog").fetchone() == (8 * 50,)


async def test_held_messages_count_towards_the_job_cap_under_concurrency(
    start_engine: StartEngine, tmp_path: Path, store: str, clock: trio.testing.MockClock | None
) -> None:
    entry = builtin_entry(store, tmp_path, max_jobs=120, max_backlog_per_topic=50)
    engine = await start_engine(modules=(entry,))
    outcomes = await enqueue_at_once(engine, [(f"t{t}", n) for t in range(4) for n in range(50)])
    assert outcomes == {"ok": 120, "queue_full": 80}
    assert sum(queue_status(engine)["backlog"].values()) == 120


async def test_concurrent_enqueues_never_pass_the_job_cap(
    start_engine: StartEngine, tmp_path: Path, store: str, clock: trio.testing.MockClock | None
) -> None:
    entry = builtin_entry(store, tmp_path, max_jobs=100, concurrency=1)
    engine = await start_engine(modules=(entry,))
    handler = Handler(engine, "a::fn")
    handler.hang = True  # every job stays waiting or in flight
    subscribe(engine, "a1", "a::fn")
    outcomes = await enqueue_at_once(engine, [("t", n) for n in range(150)])
    assert outcomes == {"ok": 100, "queue_full": 50}
    [stream] = engine.modules["queue"].streams.values()
    await wait_until(lambda: stream.in_flight == 1, what="one job is in flight")
    assert stream.waiting + stream.in_flight == 100


async def test_a_subscription_during_concurrent_holds_loses_no_message(
    start_engine: StartEngine, tmp_path: Path, store: str, clock: trio.testing.MockClock | None
) -> None:
    """A binding that arrives while enqueues are storing their held messages: each message
    is delivered exactly once, none stays held."""
    entry = builtin_entry(store, tmp_path)
    engine = await start_engine(modules=(entry,))
    handler = Handler(engine, "a::fn")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(enqueue_at_once, engine, [("t", n) for n in range(200)])
        await wait_until(
            lambda: queue_status(engine)["backlog"].get("t", 0) >= 20, what="some are held"
        )
        subscribe(engine, "a1", "a::fn")
    await wait_until(lambda: len(handler.received) == 200, what="every message is delivered")
    assert sorted(handler.datas()) == list(range(200))
    assert queue_status(engine)["backlog"] == {}
    if store == "file_based":
        with sqlite3.connect(tmp_path / "queue.db") as db:
            assert db.execute("SELECT COUNT(*) FROM backlog").fetchone() == (0,)


async def test_a_dlq_flood_keeps_the_newest_dead_letters_within_the_cap(
    start_engine: StartEngine, tmp_path: Path, store: str, clock: trio.testing.MockClock | None
) -> None:
    entry = builtin_entry(store, tmp_path, max_dlq_per_queue=5, max_attempts=1)
    engine = await start_engine(modules=(entry,))
    handler = Handler(engine, "a::fn", fail_times=10**9)  # every delivery fails
    subscribe(engine, "a1", "a::fn", queue_config={"concurrency": 1})  # in enqueue order
    for n in range(30):
        await call(engine, "enqueue", {"topic": "t", "data": n})
    await wait_until(
        lambda: queue_status(engine)["dlq_dropped"] == {"t": 25}, what="25 dead letters dropped"
    )
    dead = (await call(engine, "engine::queue::dlq_messages", {"queue": "t"}))["messages"]
    assert [m["job"]["data"] for m in dead] == [25, 26, 27, 28, 29]  # the newest stay
    assert queue_status(engine)["dlq"] == {"t": 5}
    assert len(handler.received) == 30
    if store == "file_based":
        with sqlite3.connect(tmp_path / "queue.db") as db:
            assert db.execute("SELECT COUNT(*) FROM jobs WHERE dead = 1").fetchone() == (5,)


@pytest.mark.slow  # starts redis-server
async def test_redis_caps_hold_under_concurrent_enqueues_and_the_dlq_flood(
    start_engine: StartEngine, tmp_path: Path
) -> None:
    """The RedisAdapter checks each cap inside the script that adds to it: atomic across
    concurrent enqueues (and engines)."""
    async with redis_server(tmp_path) as url:
        settings = RedisQueueConfig(
            redis_url=url,
            poll_interval_ms=20,
            backoff_ms=0,
            max_attempts=1,
            max_backlog_per_topic=50,
            max_jobs_per_stream=40,
            max_dlq_per_queue=5,
        )
        entry = ModuleEntry(
            "queue", "modules::queue::QueueModule", "modules[0]", QueueConfig(adapter=settings)
        )
        engine = await start_engine(modules=(entry,))
        held = await enqueue_at_once(engine, [(f"h{t}", n) for t in range(4) for n in range(60)])
        assert held == {"ok": 4 * 50, "queue_full": 4 * 10}

        hanging = Handler(engine, "a::fn")
        hanging.hang = True  # its jobs stay in their stream
        subscribe(engine, "a1", "a::fn")  # topic "t"
        failing = Handler(engine, "b::fn", fail_times=10**9)
        engine.triggers.bind(Binding(None, "b1", "queue", "b::fn", {"topic": "d"}))
        await wait_until(
            lambda: queue_status(engine)["subscriptions"] == 2,
            what="the subscriptions are in Redis",
        )
        jobs = await enqueue_at_once(engine, [("t", n) for n in range(60)])
        assert jobs == {"ok": 40, "queue_full": 20}
        for n in range(40):
            await call(engine, "enqueue", {"topic": "d", "data": n})
        await wait_until(
            lambda: queue_status(engine)["dlq_dropped"] == {"d": 35},
            what="35 dead letters dropped",
            timeout=30,
        )
        dead = (await call(engine, "engine::queue::dlq_messages", {"queue": "d"}))["messages"]
        assert len(dead) == 5
        assert len(failing.received) == 40
