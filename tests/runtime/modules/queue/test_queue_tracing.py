"""A queued job continues its enqueuer's trace (issue 16, item 16).

Before the fix every delivery started a new trace and lost the baggage. Now a job carries
the ``traceparent`` and ``baggage`` it was enqueued with (in memory, in SQLite, in Redis),
the delivery's consumer span is a child of the enqueuer's span, and the worker handling the
job receives that trace and the baggage. A raw worker sends the trace headers itself, so
every id is known; the observability module keeps spans in memory.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from iii_trio.runtime.config.loading import ModuleEntry
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.queue.config import (
    BuiltinQueueConfig,
    NamedQueueConfig,
    QueueConfig,
    RedisQueueConfig,
)
from tests.runtime.modules.observability.support import call, otel_entry
from tests.support.clocks import backend_clock
from tests.support.engine import StartEngine, engine_starter, worker_url
from tests.support.raw_worker import RawWorker, raw_worker
from tests.support.redis_server import redis_server
from tests.support.waiting import wait_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
WORKER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{WORKER_SPAN}-01"
BAGGAGE = "tenant=acme,request=r-1"

ADAPTERS = ["in_memory", "file_based", pytest.param("redis", marks=pytest.mark.slow)]


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def clock(adapter: str) -> trio.testing.MockClock | None:
    return backend_clock(adapter)


@contextlib.asynccontextmanager
async def queue_entries(adapter: str, tmp_path: Path) -> AsyncIterator[ModuleEntry]:
    """The queue module on ``adapter`` (a real redis-server for ``redis``)."""
    named = {"payment": NamedQueueConfig()}
    async with contextlib.AsyncExitStack() as stack:
        settings: BuiltinQueueConfig | RedisQueueConfig
        if adapter == "redis":
            url = await stack.enter_async_context(redis_server(tmp_path))
            settings = RedisQueueConfig(redis_url=url, poll_interval_ms=20)
        else:
            settings = BuiltinQueueConfig(
                store_method=adapter,  # type: ignore[arg-type]
                file_path=str(tmp_path / "queue.db"),
            )
        config = QueueConfig(adapter=settings, queue_configs=named)
        yield ModuleEntry("queue", "modules::queue::QueueModule", "modules[0]", config)


async def start(start_engine: StartEngine, entry: ModuleEntry) -> Engine:
    return await start_engine(modules=(entry, otel_entry()))


def invoke(function_id: str, data: Any, **extra: Any) -> dict[str, Any]:
    return {
        "type": "invokefunction",
        "function_id": function_id,
        "data": data,
        "traceparent": TRACEPARENT,
        "baggage": BAGGAGE,
        **extra,
    }


async def handle_one(worker: RawWorker) -> dict[str, Any]:
    """The next ``invokefunction`` the worker gets (answered); other frames skipped."""
    while True:
        frame = await worker.recv(timeout=30)
        if frame["type"] == "invokefunction":
            await worker.answer(frame, {"ok": True})
            return frame


async def spans_of_trace(engine: Engine, *names: str) -> dict[str, dict[str, Any]]:
    """The spans of TRACE_ID by name, once every one of ``names`` is recorded."""

    async def recorded() -> dict[str, dict[str, Any]] | None:
        query = {"trace_id": TRACE_ID, "search_all_spans": True, "limit": 100}
        rows = (await call(engine, "engine::traces::list", query))["spans"]
        by_name = {row["name"]: row for row in rows}
        return by_name if set(names) <= set(by_name) else None

    found: dict[str, dict[str, Any]] = await wait_until(
        recorded, what=f"spans {names} of the trace", timeout=30
    )
    return found


async def bind(worker: RawWorker, engine: Engine, topic: str) -> None:
    await worker.register("jobs::run")
    frame = {"type": "registertrigger", "id": "q", "trigger_type": "queue"}
    await worker.send(frame | {"function_id": "jobs::run", "config": {"topic": topic}})
    await wait_until(lambda: len(engine.registry.bindings) == 1, what="the queue trigger")


async def test_a_topic_job_continues_its_enqueuers_trace(
    start_engine: StartEngine, tmp_path: Path, adapter: str, clock: trio.testing.MockClock | None
) -> None:
    async with queue_entries(adapter, tmp_path) as entry:
        engine = await start(start_engine, entry)
        async with raw_worker(worker_url(engine)) as worker:
            await bind(worker, engine, "work")
            if adapter == "redis":
                await wait_until(
                    lambda: engine.modules["queue"].introspect()["subscriptions"] == 1,
                    what="the subscription is in Redis",
                )
            await worker.send(invoke("enqueue", {"topic": "work", "data": 1}, invocation_id="e"))
            delivered = await handle_one(worker)
            spans = await spans_of_trace(
                engine, "handle_invocation enqueue", "queue work", "handle_invocation jobs::run"
            )
    enqueue, job = spans["handle_invocation enqueue"], spans["queue work"]
    handler = spans["handle_invocation jobs::run"]
    assert enqueue["parent_span_id"] == WORKER_SPAN
    assert (job["parent_span_id"], job["kind"]) == (enqueue["span_id"], "consumer")
    assert handler["parent_span_id"] == job["span_id"]
    # The worker continues the handler's span, with the enqueuer's baggage.
    assert delivered["traceparent"] == f"00-{TRACE_ID}-{handler['span_id']}-01"
    assert delivered["baggage"] == BAGGAGE


async def test_a_job_of_the_invoke_action_continues_the_frames_trace(
    start_engine: StartEngine, tmp_path: Path, adapter: str, clock: trio.testing.MockClock | None
) -> None:
    async with queue_entries(adapter, tmp_path) as entry:
        engine = await start(start_engine, entry)
        async with raw_worker(worker_url(engine)) as worker:
            await worker.register("pay::charge")
            await wait_until(
                lambda: "pay::charge" in engine.registry.functions, what="pay::charge is registered"
            )
            action = {"type": "enqueue", "queue": "payment"}
            await worker.send(invoke("pay::charge", {"n": 1}, invocation_id="e", action=action))
            delivered = await handle_one(worker)
            spans = await spans_of_trace(engine, "queue payment", "handle_invocation pay::charge")
    job, handler = spans["queue payment"], spans["handle_invocation pay::charge"]
    assert job["parent_span_id"] == WORKER_SPAN  # the action itself is no span of its own
    assert handler["parent_span_id"] == job["span_id"]
    assert delivered["traceparent"] == f"00-{TRACE_ID}-{handler['span_id']}-01"
    assert delivered["baggage"] == BAGGAGE


async def test_a_held_message_keeps_its_trace_until_its_first_subscriber(
    start_engine: StartEngine, tmp_path: Path, adapter: str, clock: trio.testing.MockClock | None
) -> None:
    """Held in the backlog (memory, SQLite, Redis), then fanned out: still the same trace."""
    async with queue_entries(adapter, tmp_path) as entry:
        engine = await start(start_engine, entry)
        async with raw_worker(worker_url(engine)) as worker:
            await worker.send(invoke("enqueue", {"topic": "later", "data": 1}, invocation_id="e"))
            assert (await worker.expect("invocationresult", timeout=30))["invocation_id"] == "e"
            await bind(worker, engine, "later")
            delivered = await handle_one(worker)
            spans = await spans_of_trace(engine, "handle_invocation enqueue", "queue later")
    assert spans["queue later"]["parent_span_id"] == spans["handle_invocation enqueue"]["span_id"]
    assert delivered["traceparent"].split("-")[1] == TRACE_ID
    assert delivered["baggage"] == BAGGAGE


async def test_a_stored_job_keeps_its_trace_across_a_restart(
    start_engine: StartEngine, tmp_path: Path
) -> None:
    """``file_based``: the trace is in SQLite with the job (jobs table and backlog): a job in
    delivery when the engine stopped and a held message come back with it."""
    async with queue_entries("file_based", tmp_path) as entry:
        async with trio.open_nursery() as first_run:
            first = await engine_starter(first_run)(modules=(entry, otel_entry()))
            async with raw_worker(worker_url(first)) as worker:
                await worker.register("pay::charge")
                await wait_until(
                    lambda: "pay::charge" in first.registry.functions, what="pay::charge"
                )
                action = {"type": "enqueue", "queue": "payment"}
                await worker.send(invoke("pay::charge", 1, invocation_id="n", action=action))
                seen = {(await worker.recv(timeout=30))["type"] for _ in range(2)}
                assert seen == {"invocationresult", "invokefunction"}  # left unanswered
                await worker.send(invoke("enqueue", {"topic": "t", "data": 2}, invocation_id="t"))
                await worker.expect("invocationresult", timeout=30)
                first_run.cancel_scope.cancel()
        engine = await start(start_engine, entry)
        async with raw_worker(worker_url(engine)) as worker:
            await worker.register("pay::charge")
            named = await handle_one(worker)
            await bind(worker, engine, "t")
            held = await handle_one(worker)
    assert (named["data"], held["data"]) == (1, 2)
    for delivered in (named, held):
        assert delivered["traceparent"].split("-")[1] == TRACE_ID
        assert delivered["baggage"] == BAGGAGE


async def test_a_database_of_an_older_build_gains_the_trace_columns(
    start_engine: StartEngine, tmp_path: Path
) -> None:
    """A backlog written before jobs carried a trace is read (no trace) and extended."""
    with sqlite3.connect(tmp_path / "queue.db") as db:
        db.executescript(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, body TEXT NOT NULL, dead INTEGER NOT NULL);"
            "CREATE TABLE backlog (message_id TEXT PRIMARY KEY, topic TEXT NOT NULL,"
            " data TEXT NOT NULL);"
            "INSERT INTO backlog VALUES ('m-old', 'later', '{\"old\": true}');"
        )
    async with queue_entries("file_based", tmp_path) as entry:
        engine = await start(start_engine, entry)
        async with raw_worker(worker_url(engine)) as worker:
            await bind(worker, engine, "later")
            delivered = await handle_one(worker)
    assert delivered["data"] == {"old": True}
    assert "baggage" not in delivered
