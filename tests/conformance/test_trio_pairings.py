"""The trio SDK paired with each official SDK version, scenario by scenario (spec §10).

test_official_sdks.py pairs the official SDKs with each other and checks calls and errors
between the trio SDK and each of them; here the remaining scenarios run with the trio SDK on
one side and every official version on the other: void both ways, 100 concurrent calls,
a client timeout followed by a good call, a target killed mid-call, and a trigger type the
trio SDK provides for an official worker's function.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from iii_trio.runtime.engine import Engine
from iii_trio.sdk import III, InvocationError, InvocationTimeout
from iii_trio.sdk.client import Binding
from tests.conformance.harness import SDKS, SdkWorker, sdk_worker
from tests.conformance.test_official_sdks import prefix, wait_for_functions
from tests.support.engine import worker_url
from tests.support.waiting import wait_until

LABELS = list(SDKS)


class Recorder:
    """A trio-side trigger type that records what the engine delivers."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[tuple[str, Binding]](16)

    async def register_trigger(self, binding: Binding) -> None:
        await self.send.send(("register", binding))

    async def unregister_trigger(self, binding: Binding) -> None:
        await self.send.send(("unregister", binding))


class TrioSide:
    def __init__(self, iii: III, counter: dict[str, int], recorder: Recorder) -> None:
        self.iii = iii
        self.counter = counter
        self.recorder = recorder


@pytest.fixture
async def trio_side(engine: Engine) -> AsyncIterator[TrioSide]:
    iii = III(worker_url(engine), worker_name="trio", shutdown_timeout=1)
    counter = {"n": 0}
    recorder = Recorder()

    @iii.function(id="trio::count")
    async def count(data: Any) -> Any:
        counter["n"] += 1
        return counter

    @iii.function(id="trio::sleepy")
    async def sleepy(data: Any) -> Any:
        await trio.sleep(data["sleep_ms"] / 1000)  # real time: official SDK processes call it
        return data

    iii.register_trigger_type("trio-topic", recorder, description="topics the trio side fires")
    async with iii.connect():
        yield TrioSide(iii, counter, recorder)


@pytest.fixture(params=LABELS)
async def official(
    request: pytest.FixtureRequest, engine: Engine, tmp_path: Path
) -> AsyncIterator[tuple[str, SdkWorker]]:
    label: str = request.param
    async with sdk_worker(label, worker_url(engine), prefix(label), tmp_path) as worker:
        await wait_for_functions(engine, f"{prefix(label)}::echo")
        yield label, worker


async def test_void_both_ways(trio_side: TrioSide, official: tuple[str, SdkWorker]) -> None:
    label, worker = official
    name = prefix(label)
    await wait_for_functions_via(trio_side, f"{name}::count", f"{name}::read_count")
    await trio_side.iii.trigger_void(f"{name}::count", {"n": 1})

    async def counted_once() -> bool:
        result = await trio_side.iii.trigger(f"{name}::read_count", {})
        return bool(result["count"] == 1)

    await wait_until(counted_once, what="the official side counts one void call")

    reply = await worker.call_void("trio::count", {"from": label})
    assert reply["ok"], reply
    assert reply["result"] is None  # nothing comes back for a void call

    async def trio_counted() -> bool:
        return trio_side.counter["n"] == 1

    await wait_until(trio_counted, what="the trio side counts one void call")
    await trio.sleep(0.3)  # real time (the SDK process): a second delivery would have landed
    assert trio_side.counter["n"] == 1


async def test_100_concurrent_calls_both_ways_are_correlated(
    trio_side: TrioSide, official: tuple[str, SdkWorker]
) -> None:
    label, worker = official
    name = prefix(label)
    await wait_for_functions_via(trio_side, f"{name}::sleepy")
    # A fixed spread of 0-98 ms sleeps, so completions come back out of order.
    datas = [{"n": n, "sleep_ms": (n * 37) % 99} for n in range(100)]
    results: dict[int, Any] = {}

    async def one(data: dict[str, int]) -> None:
        results[data["n"]] = await trio_side.iii.trigger(f"{name}::sleepy", data, timeout=30)

    async with trio.open_nursery() as nursery:
        for data in datas:
            nursery.start_soon(one, data)
    assert [results[n]["n"] for n in range(100)] == list(range(100))
    assert all(results[d["n"]]["sleep_ms"] == d["sleep_ms"] for d in datas)

    reply = await worker.request("call_many", function_id="trio::sleepy", datas=datas)
    assert reply["ok"], reply
    assert [result["n"] for result in reply["result"]] == list(range(100))


async def test_a_client_timeout_then_the_next_call_succeeds(
    trio_side: TrioSide, official: tuple[str, SdkWorker]
) -> None:
    label, _ = official
    name = prefix(label)
    await wait_for_functions_via(trio_side, f"{name}::sleepy")
    with pytest.raises(InvocationTimeout) as info:
        await trio_side.iii.trigger(f"{name}::sleepy", {"sleep_ms": 1500}, timeout=0.3)
    assert info.value.code == "timeout"
    again = await trio_side.iii.trigger(f"{name}::echo", {"after": "timeout"}, timeout=10)
    assert again["after"] == "timeout"
    await trio.sleep(1.5)  # real time (the SDK process): the late result is dropped quietly
    assert await trio_side.iii.trigger(f"{name}::echo", 1, timeout=10) == 1


async def test_an_official_target_killed_mid_call_stops_the_call_at_once(
    trio_side: TrioSide, official: tuple[str, SdkWorker], engine: Engine
) -> None:
    label, worker = official
    name = prefix(label)
    await wait_for_functions_via(trio_side, f"{name}::sleepy")
    failures: list[InvocationError] = []

    async def slow_call() -> None:
        try:
            await trio_side.iii.trigger(f"{name}::sleepy", {"sleep_ms": 20000}, timeout=30)
        except InvocationError as exc:
            failures.append(exc)

    with trio.fail_after(10):  # long before the 20 s handler or the 30 s timeout
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_call)
            await wait_until(lambda: engine.router.live, what="the call is in flight")
            worker.process.kill()
    assert [failure.code for failure in failures] == ["invocation_stopped"]


async def test_a_trio_trigger_type_serves_an_official_binding(
    trio_side: TrioSide, official: tuple[str, SdkWorker]
) -> None:
    label, worker = official
    name = prefix(label)
    bound = await worker.request(
        "register_trigger",
        trigger_type="trio-topic",
        function_id=f"{name}::echo",
        config={"topic": "t1"},
    )
    assert bound["ok"], bound
    with trio.fail_after(10):
        kind, binding = await trio_side.recorder.receive.receive()
    assert kind == "register"
    assert binding.function_id == f"{name}::echo"
    assert binding.config == {"topic": "t1"}
    # The provider fires the binding itself, with an ordinary call.
    fired = await trio_side.iii.trigger(binding.function_id, {"fired": "t1"}, timeout=10)
    assert fired["fired"] == "t1"

    assert (await worker.request("unregister_trigger", handle=bound["result"]["handle"]))["ok"]
    with trio.fail_after(10):
        kind, gone = await trio_side.recorder.receive.receive()
    assert (kind, gone.id) == ("unregister", binding.id)


async def wait_for_functions_via(side: TrioSide, *function_ids: str) -> None:
    """Through the trio SDK's own listing (registrations are fire-and-forget)."""

    async def listed() -> bool:
        rows = await side.iii.list_functions()
        return set(function_ids) <= {row["function_id"] for row in rows}

    await wait_until(listed, what=f"{', '.join(function_ids)} listed", timeout=30)
