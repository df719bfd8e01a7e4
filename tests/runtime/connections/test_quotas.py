"""Per-worker quotas (issue 16 item 10): functions, trigger bindings, trigger types and
channels per worker connection, each refused past its limit with ``quota_exceeded``; the
workers' channels kept apart from the HTTP module's, so no worker can starve HTTP."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from iii_trio.runtime.engine import Engine
from tests.runtime.modules.rest_api.support import base_url, http_entry, routed
from tests.support.engine import StartEngine, worker_url
from tests.support.raw_worker import RawWorker, raw_worker


async def test_functions_past_the_quota_are_refused_and_logged_once(
    start_engine: StartEngine, caplog: pytest.LogCaptureFixture
) -> None:
    engine = await start_engine(max_functions_per_worker=3)
    with caplog.at_level(logging.WARNING, logger="iii_trio.quotas"):
        async with raw_worker(worker_url(engine)) as worker:
            for n in range(6):
                await worker.register(f"w::f{n}")
            await worker.register("w::f0", description="a replacement is not a new function")
            listed = await _function_ids(worker)
            assert listed == ["w::f0", "w::f1", "w::f2"]
            async with raw_worker(worker_url(engine)) as other:  # its own quota
                await other.register("o::f")
                assert "o::f" in await _function_ids(other)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "quota_exceeded" in warnings[0]
    assert "max_functions_per_worker" in warnings[0]


async def test_bindings_past_the_quota_get_a_quota_exceeded_result(
    engine_with_quotas: Engine,
) -> None:
    async with raw_worker(worker_url(engine_with_quotas)) as worker:
        for n in range(2):
            await worker.send(_binding(f"t{n}"))
        await worker.send(_binding("t0"))  # the same id again replaces: no refusal
        await worker.send(_binding("t2"))
        answer = await worker.expect("triggerregistrationresult")
        assert answer["id"] == "t2"
        assert answer["error"]["code"] == "quota_exceeded"
        assert "max_triggers_per_worker" in answer["error"]["message"]
        await worker.send({"type": "unregistertrigger", "id": "t1", "trigger_type": "tt"})
        await worker.send(_binding("t3"))  # room again
        rows = (await worker.call("engine::triggers::list", {}))["result"]["triggers"]
        assert sorted(row["id"] for row in rows) == ["t0", "t3"]


async def test_trigger_types_past_the_quota_are_refused(engine_with_quotas: Engine) -> None:
    async with raw_worker(worker_url(engine_with_quotas)) as worker:
        for n in range(4):
            await worker.send({"type": "registertriggertype", "id": f"tt{n}", "description": "x"})
        rows = (await worker.call("engine::trigger-types::list", {}))["result"]["trigger_types"]
        ids = {row["id"] for row in rows}
        assert {"tt0", "tt1"} <= ids
        assert not {"tt2", "tt3"} & ids


async def test_channels_past_the_worker_quota_are_refused(engine_with_quotas: Engine) -> None:
    engine = engine_with_quotas
    async with raw_worker(worker_url(engine)) as worker, raw_worker(worker_url(engine)) as other:
        for _ in range(2):
            assert "result" in await worker.call("engine::channels::create", {})
        refused = await worker.call("engine::channels::create", {})
        assert refused["error"]["code"] == "quota_exceeded"
        assert "max_channels_per_worker" in refused["error"]["message"]
        assert "result" in await other.call("engine::channels::create", {})  # its own quota
        assert engine.channels.held_by(worker.worker_id) == 2


async def test_workers_cannot_starve_http_of_channels(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    """The attack: one worker made 10,000 unconnected channels and every HTTP request then
    got 503 for five minutes. Now each worker has its share (1,000 by default) of a pool of
    workers' channels (10,000), and the HTTP module's channels are a pool of their own."""
    engine = await start_engine(modules=(http_entry(),))
    async with raw_worker(worker_url(engine)) as server:
        await server.register("api::hello")
        await server.send(
            {
                "type": "registertrigger",
                "id": "route",
                "trigger_type": "http",
                "function_id": "api::hello",
                "config": {"api_path": "hello", "http_method": "GET"},
            }
        )
        await routed(engine, 1)
        async with AsyncExitStack() as stack:
            hostile = [
                await stack.enter_async_context(raw_worker(worker_url(engine))) for _ in range(11)
            ]
            answers = [await _create_channels(worker, 1001) for worker in hostile]
            assert [a.count("ok") for a in answers] == [1000] * 10 + [0]
            assert {code for a in answers for code in a} == {"ok", "quota_exceeded"}
            assert engine.channels.worker_channels == 10_000
            async with httpx.AsyncClient(base_url=base_url(engine), timeout=10) as http:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_answer_one, server)
                    response = await http.get("/hello")
            assert response.status_code == 200
            assert response.json() == {"hello": True}
            assert engine.channels.module_channels == 0  # the request's two are gone


@pytest.fixture
async def engine_with_quotas(start_engine: StartEngine) -> Engine:
    return await start_engine(
        max_triggers_per_worker=2, max_trigger_types_per_worker=2, max_channels_per_worker=2
    )


async def _answer_one(server: RawWorker) -> None:
    invoke = await server.expect("invokefunction")
    await server.answer(invoke, {"status_code": 200, "body": {"hello": True}})


def _binding(trigger_id: str) -> dict[str, Any]:
    return {
        "type": "registertrigger",
        "id": trigger_id,
        "trigger_type": "tt",
        "function_id": "w::f",
        "config": {},
    }


async def _function_ids(worker: RawWorker) -> list[str]:
    result = (await worker.call("engine::functions::list", {}))["result"]
    return sorted(row["function_id"] for row in result["functions"] if "::f" in row["function_id"])


async def _create_channels(worker: RawWorker, count: int) -> list[str]:
    """``count`` calls of engine::channels::create sent at once: "ok" or the error code each."""
    for n in range(count):
        await worker.invoke("engine::channels::create", {}, f"c{n}")
    answers = [await worker.expect("invocationresult") for _ in range(count)]
    return [a["error"]["code"] if "error" in a else "ok" for a in answers]
