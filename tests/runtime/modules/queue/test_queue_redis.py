"""QueueModule, RedisAdapter (spec/modules.md §6, at least once) against a real
redis-server. Real time, since the I/O is real: small backoffs, leases and poll intervals
keep each test short; every wait has a deadline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.calls.invocation import EngineFunction
from iii_trio.runtime.config.loading import EngineConfig, ModuleEntry
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.queue.config import NamedQueueConfig, QueueConfig, RedisQueueConfig
from iii_trio.runtime.modules.storage.redis import open_redis
from iii_trio.sdk import III
from iii_trio.sdk.errors import InvocationError as SdkInvocationError
from tests.runtime.modules.queue.support import (
    GroupHandler,
    Handler,
    call,
    enqueue_lanes,
    subscribe,
)
from tests.support.engine import StartEngine, worker_url
from tests.support.redis_server import redis_server
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # starts redis-server

DEADLINE = 15.0  # seconds for anything to happen; generous for a loaded machine


def redis_entry(url: str, **adapter: Any) -> ModuleEntry:
    named = {
        "payment": NamedQueueConfig(max_retries=2),
        "lanes": NamedQueueConfig(
            type="fifo", message_group_field="customer", concurrency=2, max_retries=3
        ),
    }
    settings: dict[str, Any] = {"poll_interval_ms": 20, "backoff_ms": 50}
    settings |= {"visibility_timeout_ms": 3000} | adapter
    config = QueueConfig(adapter=RedisQueueConfig(redis_url=url, **settings), queue_configs=named)
    return ModuleEntry("queue", "modules::queue::QueueModule", "modules[0]", config)


@pytest.fixture
async def redis_url(tmp_path: Path) -> AsyncIterator[str]:
    async with redis_server(tmp_path) as url:
        yield url


def queue_module(engine: Engine) -> Any:
    return engine.modules["queue"]


async def dead_letters(engine: Engine, queue: str = "t") -> list[dict[str, Any]]:
    reply = await call(engine, "engine::queue::dlq_messages", {"queue": queue})
    messages: list[dict[str, Any]] = reply["messages"]
    return messages


async def test_jobs_are_handled_then_gone_from_redis(
    start_engine: StartEngine, redis_url: str
) -> None:
    engine = await start_engine(modules=(redis_entry(redis_url),))
    handler = Handler(engine, "a::fn")
    subscribe(engine, "a1", "a::fn")
    for n in range(3):
        assert await call(engine, "enqueue", {"topic": "t", "data": {"n": n}}) is None
    with trio.fail_after(DEADLINE):
        await handler.wait_for(3)
    assert sorted(d["n"] for d in handler.datas()) == [0, 1, 2]
    async with open_redis(redis_url) as redis:

        async def acked() -> bool:
            return await redis.execute("XLEN", "queue:t:a%3A%3Afn:jobs") == 0

        await wait_until(acked, what="the job is acked", timeout=DEADLINE)  # once handled


async def test_fan_out_per_function_and_replicas_compete(
    start_engine: StartEngine, redis_url: str
) -> None:
    engine = await start_engine(modules=(redis_entry(redis_url),))
    first, second = Handler(engine, "a::fn"), Handler(engine, "b::fn")
    subscribe(engine, "a1", "a::fn")
    subscribe(engine, "a2", "a::fn")  # the same function bound twice: one job stream
    subscribe(engine, "b1", "b::fn")
    for n in range(5):
        await call(engine, "enqueue", {"topic": "t", "data": {"n": n}})
    with trio.fail_after(DEADLINE):
        await first.wait_for(5)
        await second.wait_for(5)
    await trio.sleep(0.3)  # a second delivery of any job would land meanwhile
    assert sorted(d["n"] for d in first.datas()) == list(range(5))  # each message once
    assert sorted(d["n"] for d in second.datas()) == list(range(5))


async def test_messages_wait_in_redis_for_the_first_subscriber(
    start_engine: StartEngine, redis_url: str
) -> None:
    engine = await start_engine(modules=(redis_entry(redis_url),))
    handler = Handler(engine, "a::fn")
    await call(engine, "enqueue", {"topic": "t", "data": 1})
    await call(engine, "enqueue", {"topic": "t", "data": 2})
    async with open_redis(redis_url) as redis:
        assert await redis.execute("LLEN", "queue:t:backlog") == 2
    subscribe(engine, "a1", "a::fn")
    with trio.fail_after(DEADLINE):
        await handler.wait_for(2)
    assert handler.datas() == [1, 2]


async def test_retries_back_off_then_the_dlq_holds_the_job_until_redriven(
    start_engine: StartEngine, redis_url: str
) -> None:
    engine = await start_engine(modules=(redis_entry(redis_url, max_attempts=3, backoff_ms=100),))
    handler = Handler(engine, "a::fn", fail_times=3)
    subscribe(engine, "a1", "a::fn")
    await call(engine, "enqueue", {"topic": "t", "data": {"order": 1}})
    with trio.fail_after(DEADLINE):
        await handler.wait_for(3)
    times = [at for at, _ in handler.received]
    assert times[1] - times[0] >= 0.1  # backoff_ms * 2^0, then * 2^1
    assert times[2] - times[1] >= 0.2

    async def dead() -> bool:
        return len(await dead_letters(engine)) == 1

    await wait_until(dead, what="the job is dead-lettered", timeout=DEADLINE)

    async def counted() -> bool:  # introspection shows the DLQ size its consumer last saw
        rows = (await call(engine, "engine::modules::list", {}))["modules"]
        status = next(row["status"] for row in rows if row["name"] == "queue")
        return bool(status["dlq"] == {"t": 1})

    await wait_until(counted, what="introspection counts the DLQ", timeout=DEADLINE)
    [entry] = await dead_letters(engine)
    assert set(entry) == {"message_id", "function_id", "job", "error", "failed_at"}
    assert entry["function_id"] == "a::fn"
    assert entry["error"] == "boom: a::fn failed"
    assert entry["job"]["attempts_made"] == 3
    assert entry["job"]["max_attempts"] == 3
    assert entry["job"]["data"] == {"order": 1}
    assert entry["job"]["message_id"] == entry["message_id"]
    assert isinstance(entry["failed_at"], int)

    redriven = await call(
        engine, "iii::queue::redrive_message", {"queue": "t", "message_id": entry["message_id"]}
    )
    assert redriven == {"queue": "t", "message_id": entry["message_id"], "redriven": True}
    with trio.fail_after(DEADLINE):
        await handler.wait_for(4)  # the handler works now
    assert handler.datas()[3] == {"order": 1}
    assert await dead_letters(engine) == []


async def test_redrive_moves_every_dead_letter_back(
    start_engine: StartEngine, redis_url: str
) -> None:
    engine = await start_engine(modules=(redis_entry(redis_url, max_attempts=1),))
    handler = Handler(engine, "a::fn", fail_times=2)
    subscribe(engine, "a1", "a::fn")
    for n in range(2):
        await call(engine, "enqueue", {"topic": "t", "data": n})

    async def both_dead() -> bool:
        return len(await dead_letters(engine)) == 2

    await wait_until(both_dead, what="both jobs are dead-lettered", timeout=DEADLINE)
    assert await call(engine, "iii::queue::redrive", {"queue": "t"}) == {
        "queue": "t",
        "redriven": 2,
    }
    with trio.fail_after(DEADLINE):
        await handler.wait_for(4)
    assert sorted(handler.datas()[2:]) == [0, 1]
    assert await call(engine, "iii::queue::redrive", {"queue": "t"}) == {
        "queue": "t",
        "redriven": 0,
    }


async def test_a_hung_handler_loses_its_lease(start_engine: StartEngine, redis_url: str) -> None:
    entry = redis_entry(redis_url, max_attempts=2, backoff_ms=0, visibility_timeout_ms=300)
    engine = await start_engine(modules=(entry,))
    handler = Handler(engine, "a::fn")
    handler.hang = True
    subscribe(engine, "a1", "a::fn")
    await call(engine, "enqueue", {"topic": "t", "data": "x"})
    with trio.fail_after(DEADLINE):
        await handler.wait_for(2)  # delivered again once the first lease ran out

    async def dead() -> bool:
        return len(await dead_letters(engine)) == 1

    await wait_until(dead, what="the job is dead-lettered", timeout=DEADLINE)
    [dead_letter] = await dead_letters(engine)
    assert dead_letter["error"].startswith("timeout")
    assert handler.datas() == ["x", "x"]


@pytest.mark.parametrize(
    ("function_id", "data", "code"),
    [
        ("enqueue", {"topic": "", "data": 1}, "topic_not_set"),
        ("enqueue", {"data": 1}, "topic_not_set"),
        ("engine::queue::dlq_messages", {}, "queue_not_set"),
        ("iii::queue::redrive", {"queue": ""}, "queue_not_set"),
        ("iii::queue::redrive_message", {"queue": "t", "message_id": "nope"}, "message_not_found"),
    ],
)
async def test_bad_requests(
    start_engine: StartEngine, redis_url: str, function_id: str, data: Any, code: str
) -> None:
    engine = await start_engine(modules=(redis_entry(redis_url),))
    with pytest.raises(InvocationError) as info:
        await call(engine, function_id, data)
    assert info.value.code == code


async def test_unknown_queues_have_no_dead_letters(
    start_engine: StartEngine, redis_url: str
) -> None:
    engine = await start_engine(modules=(redis_entry(redis_url),))
    assert await call(engine, "engine::queue::dlq_messages", {"queue": "nope"}) == {
        "queue": "nope",
        "messages": [],
    }
    assert await call(engine, "iii::queue::redrive", {"queue": "nope"}) == {
        "queue": "nope",
        "redriven": 0,
    }


async def test_named_queues_through_the_invoke_action(
    start_engine: StartEngine, redis_url: str
) -> None:
    engine = await start_engine(modules=(redis_entry(redis_url),))
    charged: list[Any] = []
    done = trio.Event()
    worker = III(worker_url(engine), worker_name="payments")

    @worker.function(id="pay::charge")
    async def charge(data: Any) -> dict[str, bool]:
        charged.append(data)
        done.set()
        return {"ok": True}

    async with worker.connect():
        await wait_until(
            lambda: "pay::charge" in engine.registry.functions,
            what="pay::charge is registered",
            timeout=DEADLINE,
        )

        async def enqueue(queue: str, data: Any) -> Any:
            action = {"type": "enqueue", "queue": queue}
            return await worker.trigger("pay::charge", data, action=action)

        with pytest.raises(SdkInvocationError) as unknown:
            await enqueue("nope", {})
        assert (unknown.value.code, unknown.value.message) == (
            "enqueue_error",
            "Queue 'nope' not found",
        )
        with pytest.raises(SdkInvocationError) as no_group:
            await enqueue("lanes", {"n": 1})
        assert no_group.value.code == "enqueue_error"
        assert "customer" in no_group.value.message

        receipt = await enqueue("payment", {"amount": 5})
        assert set(receipt) == {"messageReceiptId"}
        assert len(receipt["messageReceiptId"]) == 36
        with trio.fail_after(DEADLINE):
            await done.wait()
    assert [data["amount"] for data in charged] == [5]  # (the SDK adds its caller's id)


async def test_fifo_groups_keep_their_order_on_redis(
    start_engine: StartEngine, redis_url: str
) -> None:
    engine = await start_engine(modules=(redis_entry(redis_url),))
    handler = GroupHandler(engine, "lanes::fn", work=0.05, fail={("a", 0): 1})
    jobs = [(group, n) for group in "ab" for n in range(3)]
    await enqueue_lanes(engine, jobs)
    with trio.fail_after(DEADLINE):
        await handler.wait_for(len(jobs) + 1)
    assert handler.order("a") == [0, 0, 1, 2]  # retried in place, blocking group a only
    assert handler.order("b") == [0, 1, 2]
    assert handler.peak == 2
    assert not handler.groups_overlapped


async def test_two_engines_on_one_redis_share_the_queues(
    start_engine: StartEngine, redis_url: str
) -> None:
    one = await start_engine(modules=(redis_entry(redis_url),))
    two = await start_engine(modules=(redis_entry(redis_url),))
    seen: dict[int, int] = {}
    workers: dict[int, str] = {}
    arrived = trio.Event()

    def consumer(engine: Engine, name: str) -> III:
        worker = III(worker_url(engine), worker_name=name)

        @worker.function(id="jobs::handle")
        async def handle(data: dict[str, int]) -> None:
            seen[data["n"]] = seen.get(data["n"], 0) + 1
            workers[data["n"]] = name
            arrived.set()

        worker.register_trigger("queue", "jobs::handle", {"topic": "jobs"})
        return worker

    async with consumer(two, "on-two").connect():
        await wait_until(
            lambda: queue_module(two).trigger.topics,
            what="the binding reaches engine two",
            timeout=DEADLINE,
        )
        await call(one, "enqueue", {"topic": "jobs", "data": {"n": 0}})  # enqueued on one
        with trio.fail_after(DEADLINE):
            await arrived.wait()
        assert workers == {0: "on-two"}  # ... handled by the worker on engine two

        async with consumer(one, "on-one").connect():  # a replica on each engine now
            await wait_until(
                lambda: queue_module(one).trigger.topics,
                what="the binding reaches engine one",
                timeout=DEADLINE,
            )
            for n in range(1, 41):
                await call(one if n % 2 else two, "enqueue", {"topic": "jobs", "data": {"n": n}})

            async def all_handled() -> bool:
                return len(seen) == 41

            await wait_until(all_handled, what="every job is handled", timeout=DEADLINE)
            await trio.sleep(0.5)  # a second delivery of any job would land meanwhile
    assert seen == dict.fromkeys(range(41), 1)  # each job exactly once


async def test_fifo_streams_run_on_one_engine_at_a_time_and_change_hands(
    start_engine: StartEngine, redis_url: str
) -> None:
    two = await start_engine(modules=(redis_entry(redis_url),))
    lanes = ("lanes", "lanes::fn")
    async with trio.open_nursery() as nursery:
        config = EngineConfig(port=0, host="127.0.0.1", modules=(redis_entry(redis_url),))
        one: Engine = await nursery.start(Engine(config).run)
        handler = GroupHandler(one, "lanes::fn", work=0.05)  # one handler for both engines
        await enqueue_lanes(one, [(group, n) for n in range(3) for group in "ab"])
        await wait_until(
            lambda: queue_module(one).streams[lanes].owner,
            what="engine one owns the lanes",
            timeout=DEADLINE,
        )
        two.registry.add_engine_function(EngineFunction("lanes::fn", handler.handle))
        await enqueue_lanes(two, [(group, n) for n in range(3, 6) for group in "ab"])
        with trio.fail_after(DEADLINE):
            await handler.wait_for(3)
        assert not queue_module(two).streams[lanes].owner  # two waits for its turn
        nursery.cancel_scope.cancel()  # engine one stops: engine two takes the stream over
    with trio.fail_after(DEADLINE):
        while {(g, n) for _, g, n in handler.starts} != {(g, n) for g in "ab" for n in range(6)}:
            await handler.wait_for(handler.finished + 1)
    assert queue_module(two).streams[lanes].owner
    for group in "ab":  # a job cut off by the stop may run twice, right after itself
        assert list(dict.fromkeys(handler.order(group))) == list(range(6))
    assert not handler.groups_overlapped  # never two jobs of one group, across both engines
    assert handler.peak <= 2


async def test_jobs_of_a_stopped_engine_are_taken_over_by_another(
    start_engine: StartEngine, redis_url: str
) -> None:
    two = await start_engine(modules=(redis_entry(redis_url),))
    late = Handler(two, "a::fn")
    async with trio.open_nursery() as nursery:  # engine one, stopped with a job in hand
        config = EngineConfig(port=0, host="127.0.0.1", modules=(redis_entry(redis_url),))
        one: Engine = await nursery.start(Engine(config).run)
        stuck = Handler(one, "a::fn")
        stuck.hang = True
        subscribe(one, "a1", "a::fn")
        await call(one, "enqueue", {"topic": "t", "data": "kept"})
        with trio.fail_after(DEADLINE):
            await stuck.wait_for(1)
        nursery.cancel_scope.cancel()
    subscribe(two, "a2", "a::fn")
    with trio.fail_after(DEADLINE):
        await late.wait_for(1)  # handed back at the stop, so taken at once by engine two
    assert late.datas() == ["kept"]


async def test_enqueue_fails_while_redis_is_away_and_works_once_it_is_back(
    start_engine: StartEngine, tmp_path: Path
) -> None:
    async with redis_server(tmp_path) as url:
        engine = await start_engine(modules=(redis_entry(url),))
        handler = Handler(engine, "a::fn")
        subscribe(engine, "a1", "a::fn")
        await call(engine, "enqueue", {"topic": "t", "data": 1})
        with trio.fail_after(DEADLINE):
            await handler.wait_for(1)
    with pytest.raises(InvocationError) as info:  # the server is gone
        await call(engine, "enqueue", {"topic": "t", "data": 2})
    assert info.value.code == "queue_unavailable"
    port = int(url.rsplit(":", 1)[1])
    async with redis_server(tmp_path, port=port):  # back, empty, on the same port

        async def reconnected() -> bool:
            return bool(queue_module(engine).introspect()["connected"])

        await wait_until(reconnected, what="the module reconnects", timeout=DEADLINE)
        await call(engine, "enqueue", {"topic": "t", "data": 3})
        with trio.fail_after(DEADLINE):
            await handler.wait_for(2)
    assert handler.datas() == [1, 3]
