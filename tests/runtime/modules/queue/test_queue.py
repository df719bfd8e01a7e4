"""QueueModule, builtin adapter (spec/modules.md §6, D8). Handlers are engine functions, so
retries, backoff and leases run under trio's autojump clock; the invoke action is driven by
a raw worker in real time."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.calls.invocation import CallContext, EngineFunction
from iii_trio.runtime.calls.registry import Binding
from iii_trio.runtime.config.loading import ModuleEntry
from iii_trio.runtime.modules.queue.config import BuiltinQueueConfig, NamedQueueConfig, QueueConfig
from tests.runtime.modules.queue.support import (
    GroupHandler,
    Handler,
    call,
    enqueue_lanes,
    subscribe,
)
from tests.support.engine import StartEngine, worker_url
from tests.support.raw_worker import raw_worker
from tests.support.waiting import wait_until


def queue_entry(**adapter: Any) -> ModuleEntry:
    named = {
        "payment": NamedQueueConfig(max_retries=2),
        "orders": NamedQueueConfig(type="fifo", message_group_field="customer"),
        "lanes": NamedQueueConfig(
            type="fifo", message_group_field="customer", concurrency=2, max_retries=3
        ),
    }
    config = QueueConfig(adapter=BuiltinQueueConfig(**adapter), queue_configs=named)
    return ModuleEntry("queue", "modules::queue::QueueModule", "modules[0]", config)


async def test_fan_out_per_function_and_replicas_compete(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(queue_entry(),))
    first, second = Handler(engine, "a::fn"), Handler(engine, "b::fn")
    subscribe(engine, "a1", "a::fn")
    subscribe(engine, "a2", "a::fn")  # the same function bound twice: one job stream
    subscribe(engine, "b1", "b::fn")
    for n in range(5):
        assert await call(engine, "enqueue", {"topic": "t", "data": {"n": n}}) is None
    await first.wait_for(5)
    await second.wait_for(5)
    await trio.sleep(10)
    assert sorted(d["n"] for d in first.datas()) == list(range(5))  # each message once
    assert sorted(d["n"] for d in second.datas()) == list(range(5))


async def test_messages_wait_for_the_first_subscriber(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(queue_entry(),))
    handler = Handler(engine, "a::fn")
    await call(engine, "enqueue", {"topic": "t", "data": 1})
    await call(engine, "enqueue", {"topic": "t", "data": 2})
    await trio.sleep(5)
    subscribe(engine, "a1", "a::fn")
    await handler.wait_for(2)
    assert handler.datas() == [1, 2]


async def test_retries_back_off_then_the_dlq_holds_the_job_until_redriven(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(queue_entry(max_attempts=3, backoff_ms=1000),))
    handler = Handler(engine, "a::fn", fail_times=3)
    subscribe(engine, "a1", "a::fn")
    start = trio.current_time()
    await call(engine, "enqueue", {"topic": "t", "data": {"order": 1}})
    await handler.wait_for(3)
    await trio.sleep(60)
    times = [round(at - start, 3) for at, _ in handler.received]
    assert times == [0.0, 1.0, 3.0]  # 1 s, then 2 s of backoff; 3 deliveries in all

    dead = await call(engine, "engine::queue::dlq_messages", {"queue": "t"})
    [entry] = dead["messages"]
    assert entry["function_id"] == "a::fn"
    assert entry["error"] == "boom: a::fn failed"
    assert entry["job"]["attempts_made"] == 3
    assert entry["job"]["data"] == {"order": 1}
    assert isinstance(entry["failed_at"], int)

    redriven = await call(
        engine, "iii::queue::redrive_message", {"queue": "t", "message_id": entry["message_id"]}
    )
    assert redriven == {"queue": "t", "message_id": entry["message_id"], "redriven": True}
    await handler.wait_for(4)  # the handler works now
    await trio.sleep(1)
    assert (await call(engine, "engine::queue::dlq_messages", {"queue": "t"}))["messages"] == []


async def test_redrive_moves_every_dead_letter_back(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(queue_entry(max_attempts=1),))
    handler = Handler(engine, "a::fn", fail_times=2)
    subscribe(engine, "a1", "a::fn")
    for n in range(2):
        await call(engine, "enqueue", {"topic": "t", "data": n})
    await handler.wait_for(2)
    await trio.sleep(1)
    assert len((await call(engine, "engine::queue::dlq_messages", {"queue": "t"}))["messages"]) == 2
    assert await call(engine, "iii::queue::redrive", {"queue": "t"}) == {
        "queue": "t",
        "redriven": 2,
    }
    await handler.wait_for(4)
    assert sorted(handler.datas()[2:]) == [0, 1]


async def test_a_hung_handler_loses_its_lease(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    config = queue_entry(max_attempts=2, backoff_ms=0, visibility_timeout_ms=2000)
    engine = await start_engine(modules=(config,))
    handler = Handler(engine, "a::fn")
    handler.hang = True
    subscribe(engine, "a1", "a::fn")
    start = trio.current_time()
    await call(engine, "enqueue", {"topic": "t", "data": "x"})
    await trio.sleep(10)
    assert [round(at - start) for at, _ in handler.received] == [0, 2]  # 2 s leases
    [entry] = (await call(engine, "engine::queue::dlq_messages", {"queue": "t"}))["messages"]
    assert entry["error"].startswith("timeout")


async def test_a_failing_job_never_stops_its_consumer(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(queue_entry(max_attempts=1),))
    handler = Handler(engine, "a::fn", fail_times=1)
    subscribe(engine, "a1", "a::fn")
    for n in range(3):
        await call(engine, "enqueue", {"topic": "t", "data": n})
    await handler.wait_for(3)
    assert sorted(handler.datas()) == [0, 1, 2]


async def test_a_false_condition_drops_the_job_for_that_function(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(queue_entry(),))
    handler = Handler(engine, "a::fn")

    async def only_even(data: Any, ctx: CallContext) -> bool:
        return bool(data % 2 == 0)

    engine.registry.add_engine_function(EngineFunction("a::even", only_even))
    subscribe(engine, "a1", "a::fn", condition_function_id="a::even")
    for n in range(4):
        await call(engine, "enqueue", {"topic": "t", "data": n})
    await trio.sleep(10)
    assert handler.datas() == [0, 2]
    assert (await call(engine, "engine::queue::dlq_messages", {"queue": "t"}))["messages"] == []


async def test_fifo_retries_in_place_and_keeps_the_order(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(queue_entry(mode="fifo", backoff_ms=500),))
    handler = Handler(engine, "a::fn", fail_times=2)  # the first job fails twice
    subscribe(engine, "a1", "a::fn")
    for n in range(3):
        await call(engine, "enqueue", {"topic": "t", "data": n})
    await handler.wait_for(5)
    assert handler.datas() == [0, 0, 0, 1, 2]


@pytest.mark.parametrize(
    ("function_id", "data", "code"),
    [
        ("enqueue", {"topic": "", "data": 1}, "topic_not_set"),
        ("enqueue", {"data": 1}, "topic_not_set"),
        ("enqueue", {"topic": 3}, "deserialization_error"),
        ("engine::queue::dlq_messages", {}, "queue_not_set"),
        ("iii::queue::redrive", {"queue": ""}, "queue_not_set"),
        ("iii::queue::redrive_message", {"queue": "t", "message_id": "nope"}, "message_not_found"),
    ],
)
async def test_bad_requests(
    start_engine: StartEngine,
    function_id: str,
    data: Any,
    code: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = await start_engine(modules=(queue_entry(),))
    with pytest.raises(InvocationError) as info:
        await call(engine, function_id, data)
    assert info.value.code == code


async def test_empty_topic_bindings_are_refused(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(queue_entry(),))
    binding = Binding(None, "b", "queue", "a::fn", {"topic": ""})
    engine.triggers.bind(binding)
    assert binding.key not in engine.registry.bindings


async def test_named_queues_through_the_invoke_action(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(queue_entry(),))
    async with raw_worker(worker_url(engine)) as worker:
        await worker.register("pay::charge")
        await wait_until(
            lambda: "pay::charge" in engine.registry.functions, what="pay::charge is registered"
        )

        async def enqueue(queue: str, data: Any, invocation_id: str) -> dict[str, Any]:
            frame = {"type": "invokefunction", "invocation_id": invocation_id}
            frame |= {"function_id": "pay::charge", "data": data}
            await worker.send(frame | {"action": {"type": "enqueue", "queue": queue}})
            return await worker.expect("invocationresult")

        unknown = await enqueue("nope", {}, "e1")
        assert unknown["error"] == {"code": "enqueue_error", "message": "Queue 'nope' not found"}
        no_group = await enqueue("orders", {"item": 1}, "e2")
        assert no_group["error"]["code"] == "enqueue_error"
        assert "customer" in no_group["error"]["message"]

        receipt = await enqueue("payment", {"amount": 5}, "e3")
        message_id = receipt["result"]["messageReceiptId"]
        invoke = await worker.expect("invokefunction")  # the queue delivers it to the worker
        assert invoke["function_id"] == "pay::charge"
        assert invoke["data"]["amount"] == 5
        await worker.answer(invoke, {"ok": True})
        module: Any = engine.modules["queue"]
        await wait_until(
            lambda: not any(s.waiting or s.in_flight for s in module.streams.values()),
            what="every queue is settled",
        )
    assert len(message_id) == 36


async def test_a_job_enqueued_through_the_invoke_action_carries_the_data_as_sent(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    """Issue 16, item 14: the dispatcher added the enqueuer's ``_caller_worker_id`` to the
    job; it belongs to calls the engine routes, not to data handed to an invoke action."""
    engine = await start_engine(modules=(queue_entry(),))
    async with raw_worker(worker_url(engine)) as worker:
        await worker.register("pay::charge")
        await wait_until(
            lambda: "pay::charge" in engine.registry.functions, what="pay::charge is registered"
        )
        frame = {"type": "invokefunction", "invocation_id": "e1", "function_id": "pay::charge"}
        action = {"type": "enqueue", "queue": "payment"}
        await worker.send(frame | {"data": {"amount": 5}, "action": action})
        receipt = await worker.expect("invocationresult")
        assert "messageReceiptId" in receipt["result"]
        invoke = await worker.expect("invokefunction")
        assert invoke["data"] == {"amount": 5}
        await worker.answer(invoke, {"ok": True})
        # A call the engine routes still gets it (spec §4.4).
        await worker.send(frame | {"invocation_id": "c1", "data": {"amount": 6}})
        routed = await worker.expect("invokefunction")
        assert routed["data"] == {"amount": 6, "_caller_worker_id": worker.worker_id}
        await worker.answer(routed, {"ok": True})


async def test_a_job_cut_off_by_unsubscribing_waits_for_the_next_subscriber(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(queue_entry(),))
    handler = Handler(engine, "a::fn")
    handler.hang = True
    binding = subscribe(engine, "a1", "a::fn")
    await call(engine, "enqueue", {"topic": "t", "data": "kept"})
    await handler.wait_for(1)
    engine.triggers.unbind(binding)  # the consumer stops while the job is being delivered
    await trio.sleep(1)
    handler.hang = False
    subscribe(engine, "a2", "a::fn")
    with trio.fail_after(60):  # (virtual seconds) a lost job never arrives
        await handler.wait_for(2)
    assert handler.datas() == ["kept", "kept"]


async def test_fifo_groups_run_side_by_side_each_in_order(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(queue_entry(),))
    handler = GroupHandler(engine, "lanes::fn", work=1.0)
    jobs = [(group, n) for group in "abc" for n in range(3)]  # all of a, then b, then c
    await enqueue_lanes(engine, jobs)
    await handler.wait_for(len(jobs))
    assert {(g, n) for _, g, n in handler.starts[:2]} == {("a", 0), ("b", 0)}  # side by side
    assert handler.starts[0][0] == handler.starts[1][0]
    assert [handler.order(g) for g in "abc"] == [[0, 1, 2]] * 3  # each group in order
    assert handler.peak == 2  # the queue's concurrency
    assert not handler.groups_overlapped


async def test_fifo_failing_job_blocks_only_its_group_until_it_succeeds(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(queue_entry(backoff_ms=500),))
    handler = GroupHandler(engine, "lanes::fn", fail={("a", 0): 2})
    start = trio.current_time()
    await enqueue_lanes(engine, [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("b", 2)])
    await handler.wait_for(7)
    by_job = {(g, n): round(at - start, 3) for at, g, n in handler.starts}  # last start wins
    assert handler.order("a") == [0, 0, 0, 1]  # retried in place: 0.5 s, then 1 s
    assert by_job[("a", 0)] == 1.5
    assert by_job[("a", 1)] == 1.5  # only after a0 succeeded
    assert [by_job[("b", n)] for n in range(3)] == [0.0, 0.0, 0.0]  # b did not wait
    assert handler.order("b") == [0, 1, 2]


async def test_fifo_job_that_always_fails_blocks_its_group_until_dead_lettered(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(queue_entry(backoff_ms=1000),))
    handler = GroupHandler(engine, "lanes::fn", fail={("a", 0): -1})
    start = trio.current_time()
    await enqueue_lanes(engine, [("a", 0), ("a", 1), ("b", 0)])
    await handler.wait_for(5)
    assert handler.order("a") == [0, 0, 0, 1]  # max_retries 3, then the next of its group
    assert [round(at - start, 3) for at, g, _ in handler.starts if g == "a"] == [0, 1, 3, 3]
    assert handler.order("b") == [0]
    [entry] = (await call(engine, "engine::queue::dlq_messages", {"queue": "lanes"}))["messages"]
    assert entry["job"]["data"] == {"customer": "a", "n": 0}
    assert entry["job"]["group_id"] == "a"


async def test_fifo_topic_jobs_share_the_default_group_whatever_the_concurrency(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(queue_entry(),))
    handler = GroupHandler(engine, "a::fn", work=1.0)
    subscribe(engine, "a1", "a::fn", queue_config={"type": "fifo", "concurrency": 4})
    start = trio.current_time()
    for n in range(4):
        await call(engine, "enqueue", {"topic": "t", "data": {"customer": f"c{n}", "n": n}})
    await handler.wait_for(4)
    assert [n for _, _, n in handler.starts] == [0, 1, 2, 3]
    assert [round(at - start) for at, _, _ in handler.starts] == [0, 1, 2, 3]
    assert handler.peak == 1
