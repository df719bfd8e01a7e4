"""``engine::baggage::*`` (spec/modules.md §9.3): they see the W3C baggage of the invocation
that calls them, sent by a raw worker or passed on by the trio SDK inside a handler."""

from __future__ import annotations

from typing import Any

import trio.testing

from iii_trio.sdk import III
from tests.runtime.modules.observability.support import otel_entry
from tests.support.engine import StartEngine, worker_url
from tests.support.raw_worker import raw_worker
from tests.support.waiting import wait_until

HEADER = "user=ada, tenant=acme%20corp;ttl=60,bad key=x,=novalue"


async def call_with_baggage(url: str, function_id: str, data: Any, baggage: str) -> Any:
    async with raw_worker(url) as worker:
        await worker.send(
            {
                "type": "invokefunction",
                "invocation_id": "b-1",
                "function_id": function_id,
                "data": data,
                "baggage": baggage,
            }
        )
        frame = await worker.expect("invocationresult")
    assert "error" not in frame, frame
    return frame.get("result")


async def test_the_callers_baggage_is_read(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(otel_entry(),))
    url = worker_url(engine)
    everything = await call_with_baggage(url, "engine::baggage::get_all", {}, HEADER)
    assert everything == {"baggage": {"user": "ada", "tenant": "acme corp"}}
    assert await call_with_baggage(url, "engine::baggage::get", {"key": "tenant"}, HEADER) == {
        "value": "acme corp"
    }
    assert await call_with_baggage(url, "engine::baggage::get", {"key": "nope"}, HEADER) == {
        "value": None
    }
    answer = await call_with_baggage(
        url, "engine::baggage::set", {"key": "step", "value": "2 of 3"}, "user=ada"
    )
    assert answer["success"] is True
    assert "cannot be changed" in answer["note"]
    assert answer["baggage"] == "user=ada,step=2%20of%203"
    async with raw_worker(url) as worker:  # no baggage at all
        frame = await worker.call("engine::baggage::get_all", {})
        bad = await worker.call("engine::baggage::get", {})
    assert frame["result"] == {"baggage": {}}
    assert bad["error"]["code"] == "deserialization_error"


async def test_a_handler_sees_the_baggage_of_the_invocation_it_serves(
    start_engine: StartEngine,
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = await start_engine(modules=(otel_entry(),))
    worker = III(worker_url(engine), worker_name="probe")

    @worker.function(id="probe::user")
    async def probe(data: Any) -> Any:
        # The SDK sends the served invocation's baggage with this call.
        return await worker.trigger("engine::baggage::get", {"key": "user"})

    async with worker.connect():
        await wait_until(
            lambda: "probe::user" in engine.registry.functions, what="probe::user is registered"
        )
        result = await call_with_baggage(worker_url(engine), "probe::user", {}, "user=grace")
    assert result == {"value": "grace"}
