"""The official SDKs, unmodified, against a real engine: P25 (PyPI iii-sdk 0.25.0) and N22
(npm iii-sdk 0.22.1), each in its own process (spec §10: A1-A6)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from iii_trio.runtime.engine import Engine
from tests.conformance.harness import SdkWorker, sdk_worker
from tests.conftest import worker_url


async def wait_for_functions(engine: Engine, *function_ids: str) -> None:
    # Real time: the SDK processes register on their own schedule.
    with trio.fail_after(30):
        while not all(f in engine.registry.functions for f in function_ids):
            await trio.sleep(0.02)


@pytest.fixture
async def pair(engine: Engine, tmp_path: Path) -> AsyncIterator[tuple[SdkWorker, SdkWorker]]:
    url = worker_url(engine)
    async with (
        sdk_worker("P25", url, "py", tmp_path) as p25,
        sdk_worker("N22", url, "node", tmp_path) as n22,
    ):
        await wait_for_functions(engine, "py::echo", "node::echo")
        yield p25, n22


@pytest.mark.parametrize("direction", ["P25->N22", "N22->P25"])
async def test_cross_sdk_sync_call(
    pair: tuple[SdkWorker, SdkWorker], engine: Engine, direction: str
) -> None:
    p25, n22 = pair
    caller, target = (p25, "node") if direction == "P25->N22" else (n22, "py")
    reply = await caller.call(f"{target}::echo", {"hello": "world", "n": [1, 2]})
    assert reply["ok"], reply
    result = reply["result"]
    caller_id = result.pop("_caller_worker_id")
    assert result == {"hello": "world", "n": [1, 2]}
    assert caller_id in engine.connections


@pytest.mark.parametrize("direction", ["P25->N22", "N22->P25"])
async def test_error_propagation(pair: tuple[SdkWorker, SdkWorker], direction: str) -> None:
    p25, n22 = pair
    caller, target = (p25, "node") if direction == "P25->N22" else (n22, "py")
    reply = await caller.call(f"{target}::boom", {})
    assert not reply["ok"]
    error = reply["error"]
    assert error["type"] == "InvocationError"
    assert error["code"] == "invocation_failed"
    assert "kaboom" in error["message"]
    assert error["stacktrace"]


@pytest.mark.parametrize("label", ["P25", "N22"])
async def test_unknown_function_fails_fast(pair: tuple[SdkWorker, SdkWorker], label: str) -> None:
    caller = pair[0] if label == "P25" else pair[1]
    with trio.fail_after(1.5):  # well inside the 2 s client timeout: not a timeout
        reply = await caller.call("nope::x", {}, timeout_ms=2000)
    assert not reply["ok"]
    assert reply["error"]["code"] == "function_not_found"


@pytest.mark.parametrize("direction", ["P25->N22", "N22->P25"])
async def test_void_runs_the_target_once(pair: tuple[SdkWorker, SdkWorker], direction: str) -> None:
    p25, n22 = pair
    caller, target = (p25, "node") if direction == "P25->N22" else (n22, "py")
    reply = await caller.request("void", function_id=f"{target}::count", data={"x": 1})
    assert reply == {"seq": reply["seq"], "ok": True, "result": None}
    with trio.fail_after(10):
        while (await caller.call(f"{target}::read_count", {}))["result"]["count"] == 0:
            await trio.sleep(0.02)
    await trio.sleep(0.2)  # a second, wrong delivery would show up by now
    assert (await caller.call(f"{target}::read_count", {}))["result"] == {"count": 1}


async def test_workers_list_and_functions_list_show_both(
    pair: tuple[SdkWorker, SdkWorker], engine: Engine
) -> None:
    p25, n22 = pair
    reply = await n22.call("engine::workers::list", {})
    rows = {row["name"]: row for row in reply["result"]["workers"]}
    assert rows["py"]["runtime"] == "python"
    assert rows["py"]["version"] == "0.25.0"
    assert rows["node"]["runtime"] == "node"
    assert rows["node"]["version"] == "0.22.1"
    assert "py::echo" in rows["py"]["functions"]
    functions = await p25.call("engine::functions::list", {})
    ids = {row["function_id"] for row in functions["result"]["functions"]}
    assert {"py::echo", "py::boom", "node::echo", "node::boom"} <= ids
