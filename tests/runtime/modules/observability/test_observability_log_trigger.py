"""The ``log`` trigger type (spec/modules.md §9.5) on a real engine: trio-SDK workers, raw
frames, an engine function as a blocked handler, and the official Node SDK's ``onLog``."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from iii_trio.runtime.calls.invocation import CallContext, EngineFunction
from iii_trio.runtime.calls.registry import Binding
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.observability import log_trigger
from iii_trio.sdk import III
from tests.conformance.harness import sdk_worker
from tests.runtime.modules.observability.support import call, otel_entry, otel_stats
from tests.support.engine import StartEngine, worker_url
from tests.support.raw_worker import raw_worker
from tests.support.waiting import wait_until

RECORD_KEYS = {
    "timestamp_unix_nano",
    "observed_timestamp_unix_nano",
    "severity_number",
    "severity_text",
    "body",
    "attributes",
    "trace_id",
    "span_id",
    "resource",
    "service_name",
    "instrumentation_scope_name",
    "instrumentation_scope_version",
}


def trigger_stats(engine: Engine) -> dict[str, Any]:
    stats: dict[str, Any] = otel_stats(engine)["log_trigger"]
    return stats


async def test_handlers_receive_the_records_of_their_level(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(otel_entry(),))
    worker = III(worker_url(engine), worker_name="watcher")
    seen: dict[str, list[dict[str, Any]]] = {"all": [], "warn": []}

    @worker.function(id="watch::all")
    async def watch_all(record: dict[str, Any]) -> None:
        seen["all"].append(record)

    @worker.function(id="watch::warn")
    async def watch_warn(record: dict[str, Any]) -> None:
        seen["warn"].append(record)

    worker.register_trigger("log", "watch::all", {})
    worker.register_trigger("log", "watch::warn", {"level": "WARN", "severity_min": 0})
    async with worker.connect():
        await wait_until(
            lambda: trigger_stats(engine)["bindings"] == 2, what="both log triggers are bound"
        )
        await call(engine, "engine::log::info", {"message": "hello", "data": {"k": 1}})
        await call(engine, "engine::log::warn", {"message": "careful"})
        await wait_until(
            lambda: len(seen["all"]) == 2 and len(seen["warn"]) == 1,
            what="two records reach watch::all and one watch::warn",
        )
    assert sorted(r["body"] for r in seen["all"]) == ["careful", "hello"]
    [warning] = seen["warn"]
    assert set(warning) == RECORD_KEYS
    assert (warning["body"], warning["severity_text"], warning["severity_number"]) == (
        "careful",
        "WARN",
        13,
    )
    [info] = [r for r in seen["all"] if r["body"] == "hello"]
    assert info["attributes"] == {"k": 1}
    assert trigger_stats(engine)["delivered"] == 3


async def test_a_bad_level_is_refused(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(otel_entry(),))
    async with raw_worker(worker_url(engine)) as worker:
        for n, config in enumerate(({"level": "loud"}, {"level": 3}, "all")):
            await worker.send(
                {
                    "type": "registertrigger",
                    "id": f"t{n}",
                    "trigger_type": "log",
                    "function_id": "w::f",
                    "config": config,
                }
            )
            answer = await worker.expect("triggerregistrationresult")
            assert answer["id"] == f"t{n}"
            assert answer["error"]["code"] == "trigger_registration_failed"
    assert trigger_stats(engine)["bindings"] == 0


async def test_a_handler_that_logs_does_not_feed_itself(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(otel_entry(),))
    worker = III(worker_url(engine), worker_name="echoer")
    handled: list[str] = []

    @worker.function(id="echo::log")
    async def echo(record: dict[str, Any]) -> None:
        handled.append(record["body"])
        # The worker's call carries the delivery's traceparent (the SDK passes it on).
        await worker.trigger("engine::log::info", {"message": f"saw {record['body']}"})

    worker.register_trigger("log", "echo::log", {"level": "all"})
    async with worker.connect():
        await wait_until(
            lambda: trigger_stats(engine)["bindings"] == 1, what="the log trigger is bound"
        )
        await call(engine, "engine::log::error", {"message": "first"})
        await wait_until(
            lambda: trigger_stats(engine)["echoes_suppressed"] == 1, what="the echo is suppressed"
        )
        await wait_until(
            lambda: trigger_stats(engine)["delivered"] == 1, what="one record is delivered"
        )
        listed = await call(engine, "engine::logs::list", {})
    assert handled == ["first"]
    assert [r["body"] for r in listed["logs"]] == ["saw first", "first"]  # stored, not fed back
    stats = trigger_stats(engine)
    assert (stats["queued"], stats["waiting"], stats["dropped"]) == (1, 0, 0)


async def test_delivery_is_bounded_and_counts_what_it_drops(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(otel_entry(logs_max_count=10),))
    release = trio.Event()
    calls = 0

    async def blocked(data: Any, ctx: CallContext) -> None:
        nonlocal calls
        calls += 1
        await release.wait()

    engine.registry.add_engine_function(EngineFunction("test::blocked", blocked))
    engine.triggers.bind(Binding(None, "watch", "log", "test::blocked", {"level": "debug"}))
    in_flight, capacity = log_trigger.DELIVERIES_IN_FLIGHT, log_trigger.QUEUE_CAPACITY
    extra = 7
    total = in_flight + 1 + capacity + extra  # one more waits in the delivery loop's hand
    for n in range(total):
        await call(engine, "engine::log::debug", {"message": f"m{n}"})
    await wait_until(lambda: calls == in_flight, what="every delivery slot is taken")
    stats = trigger_stats(engine)
    assert stats["dropped"] == extra
    assert stats["waiting"] == capacity
    assert stats["capacity"] == capacity
    release.set()
    await wait_until(
        lambda: trigger_stats(engine)["delivered"] == total - extra,
        what="every kept record is delivered",
    )
    assert calls == total - extra


@pytest.mark.slow  # an official SDK in its own process
async def test_official_node_sdk_on_log_receives_records(start_engine: StartEngine) -> None:
    engine = await start_engine(modules=(otel_entry(),))
    async with sdk_worker("N3", worker_url(engine), "n3", bare=True) as worker:
        reply = await worker.request("on_log")
        assert reply["ok"], reply
        await wait_until(
            lambda: trigger_stats(engine)["bindings"] == 1, what="the log trigger is bound"
        )
        await call(engine, "engine::log::error", {"message": "to node", "data": {"n": 3}})
        event = await worker.next_event("log")
    record = event["record"]
    assert set(record) == RECORD_KEYS
    assert (record["body"], record["severity_text"], record["attributes"]) == (
        "to node",
        "ERROR",
        {"n": 3},
    )
