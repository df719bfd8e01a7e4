"""Official SDKs, unmodified, against ``iii-trio serve`` as a user runs it (a process with a
one-line config), each SDK in its own process. Everything is checked through what the SDKs
themselves return: no look inside the engine.

Pairs are (caller, target) labels from spec §0; each pair also runs the other way round.
Add a pair here when a version joins the suite (its folder comes from
scripts/install_sdks.sh, its launch line from harness.SDKS).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.conformance.conftest import ServedEngine
from tests.conformance.harness import SDKS, SdkWorker, sdk_worker
from tests.support.waiting import wait_until

PAIRS = [("P25", "N22")]
DIRECTED = [*PAIRS, *[(target, caller) for caller, target in PAIRS]]
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# What each SDK raises for a failed call: the class name, and whether its `message` has the
# code in front ("invocation_failed: kaboom": N11, N22) or is the wire text (Python >= 0.11).
ERROR_TYPE = {"P25": "InvocationError", "P11": "IIIInvocationError", "N22": "InvocationError"}


class Pair:
    def __init__(self, caller_label: str, target_label: str, caller: SdkWorker, target: SdkWorker):
        self.caller_label, self.target_label = caller_label, target_label
        self.caller, self.target = caller, target

    def fn(self, suffix: str) -> str:
        """A function id in the target's name space."""
        return f"{self.target.name}::{suffix}"


async def wait_until_listed(worker: SdkWorker, *function_ids: str, timeout: float = 20) -> None:
    """Registrations are fire-and-forget in every SDK: poll the engine's list through one."""

    async def listed() -> bool:
        reply = await worker.request("list_functions")
        assert reply["ok"], reply
        return set(function_ids) <= {row["function_id"] for row in reply["result"]["functions"]}

    what = f"{', '.join(function_ids)} listed"
    await wait_until(listed, what=what, timeout=timeout, interval=0.05)


async def worker_row(worker: SdkWorker, name: str, timeout: float = 20) -> dict[str, Any]:
    """``name``'s row in engine::workers::list (the metadata call is void: it may lag)."""

    async def described() -> dict[str, Any] | None:
        reply = await worker.request("list_workers")
        assert reply["ok"], reply
        rows = [row for row in reply["result"]["workers"] if row.get("name") == name]
        if rows and rows[0].get("runtime"):
            assert len(rows) == 1, rows
            row: dict[str, Any] = rows[0]
            return row
        return None

    what = f"{name}'s row has its runtime"
    row: dict[str, Any] = await wait_until(described, what=what, timeout=timeout, interval=0.05)
    return row


@pytest.fixture(params=DIRECTED, ids=[f"{a}->{b}" for a, b in DIRECTED])
async def pair(
    request: pytest.FixtureRequest, served_engine: ServedEngine, tmp_path: Path
) -> AsyncIterator[Pair]:
    caller_label, target_label = request.param
    url = served_engine.url
    async with (
        sdk_worker(caller_label, url, "caller", tmp_path, bare=True) as caller,
        sdk_worker(target_label, url, "target", tmp_path, bare=True) as target,
    ):
        yield Pair(caller_label, target_label, caller, target)


async def test_each_registers_echo_and_calls_the_others_sync(pair: Pair) -> None:
    await pair.caller.register("caller::echo", "echo")
    await pair.target.register("target::echo", "echo")
    await wait_until_listed(pair.caller, "caller::echo", "target::echo")
    caller_id = (await worker_row(pair.target, "caller"))["id"]
    target_id = (await worker_row(pair.caller, "target"))["id"]
    payload = {"from": pair.caller_label, "nested": {"list": [1, 2.5, None, True, "x"]}}

    there = await pair.caller.call("target::echo", payload)
    assert there["ok"], there
    # The engine adds the caller's worker id to object payloads (spec §4.4).
    assert there["result"] == {**payload, "_caller_worker_id": caller_id}

    back = await pair.target.call("caller::echo", {"from": pair.target_label})
    assert back["ok"], back
    assert back["result"] == {"from": pair.target_label, "_caller_worker_id": target_id}

    # Non-object payloads travel unchanged.
    for value in ("text", 42, [1, "two"], None):
        reply = await pair.caller.call("target::echo", value)
        assert reply == {"seq": reply["seq"], "ok": True, "result": value}


async def test_worker_rows_name_the_sdk(pair: Pair) -> None:
    await pair.target.register("target::echo", "echo")
    row = await worker_row(pair.caller, "target")
    target = SDKS[pair.target_label]
    assert UUID.match(row["id"]), row
    assert row["runtime"] == target.runtime
    assert row["version"] == target.version

    async def lists_echo() -> bool:
        row = await worker_row(pair.caller, "target")
        return "target::echo" in row.get("functions", [])

    if "target::echo" not in row.get("functions", []):
        await wait_until(lists_echo, what="the row lists target::echo", timeout=20, interval=0.05)


async def test_void_runs_the_target_once_and_answers_nothing(pair: Pair) -> None:
    await pair.target.register("target::count", "count")
    await pair.target.register("target::read_count", "read_count")
    await wait_until_listed(pair.caller, "target::count", "target::read_count")

    reply = await pair.caller.call_void("target::count", {"n": 1})
    assert reply["ok"], reply
    assert reply["result"] is None  # the SDK returns at once, with nothing

    async def counted() -> bool:
        return bool((await pair.caller.call("target::read_count", {}))["result"]["count"])

    await wait_until(counted, what="the target counts the void call", interval=0.05)
    await trio.sleep(0.5)  # real time (SDK processes): a second delivery would have landed
    assert (await pair.caller.call("target::read_count", {}))["result"] == {"count": 1}
    # The caller is still in a clean state: an ordinary call right after works.
    assert (await pair.caller.call("target::read_count", {}))["ok"]


async def test_a_handler_error_reaches_the_caller(pair: Pair) -> None:
    message = f"kaboom from {pair.target_label}"
    await pair.target.register("target::boom", "boom", message=message)
    await wait_until_listed(pair.caller, "target::boom")

    reply = await pair.caller.call("target::boom", {"x": 1})
    assert not reply["ok"], reply
    error = reply["error"]
    assert error["code"] == "invocation_failed"
    assert error["wire_message"] == message
    assert error["type"] == ERROR_TYPE[pair.caller_label]
    # Both SDKs send the target's stack trace (Python: "ValueError: ...", Node: "Error: ...").
    assert error["stacktrace"], error
    assert f"Error: {message}" in error["stacktrace"]
    # The failure is confined to that call.
    await pair.target.register("target::echo", "echo")
    await wait_until_listed(pair.caller, "target::echo")
    assert (await pair.caller.call("target::echo", 1))["result"] == 1


async def test_an_unknown_function_fails_fast(pair: Pair) -> None:
    with trio.fail_after(1.5):  # well inside the 2 s client timeout: the engine answered
        reply = await pair.caller.call("nope::x", {}, timeout_ms=2000)
    assert not reply["ok"], reply
    assert reply["error"]["code"] == "function_not_found"
    assert reply["error"]["wire_message"] == "Function nope::x not found"


async def test_an_unregistered_function_is_gone(pair: Pair) -> None:
    await pair.target.register("target::echo", "echo")
    await wait_until_listed(pair.caller, "target::echo")
    assert (await pair.caller.call("target::echo", 1))["ok"]

    assert (await pair.target.request("unregister_function", id="target::echo"))["ok"]

    async def refused() -> Any:
        reply = await pair.caller.call("target::echo", 1, timeout_ms=2000)
        return None if reply["ok"] else reply

    reply = await wait_until(refused, what="calls to target::echo fail", interval=0.05)
    assert reply["error"]["code"] == "function_not_found"


async def test_a_worker_provided_trigger_type(pair: Pair) -> None:
    # The target provides "conformance-topic"; the caller binds its echo to it (spec §6.3).
    provider, owner = pair.target, pair.caller
    await owner.register("caller::echo", "echo")
    reply = await provider.request("register_trigger_type", id="conformance-topic")
    assert reply["ok"], reply
    bound = await owner.request(
        "register_trigger",
        trigger_type="conformance-topic",
        function_id="caller::echo",
        config={"topic": "t1"},
    )
    assert bound["ok"], bound

    registered = (await provider.next_event("trigger_registered"))["config"]
    assert UUID.match(registered["id"]), registered
    assert registered["function_id"] == "caller::echo"
    assert registered["config"] == {"topic": "t1"}

    # The provider fires the binding itself, with an ordinary call.
    fired = await provider.call(registered["function_id"], {"fired": "t1"})
    assert fired["ok"], fired
    assert fired["result"]["fired"] == "t1"

    assert (await owner.request("unregister_trigger", handle=bound["result"]["handle"]))["ok"]
    # P25 and N22 act on unregistertrigger (spec §6.5).
    gone = (await provider.next_event("trigger_unregistered"))["config"]
    assert gone["id"] == registered["id"]


async def test_a_stopped_worker_leaves_the_engine(pair: Pair) -> None:
    # SDK shutdown just closes the socket (spec §3.7): the engine must drop its functions and
    # its row, and calls to it must fail fast instead of waiting for a timeout.
    await pair.target.register("target::echo", "echo")
    await wait_until_listed(pair.caller, "target::echo")
    await worker_row(pair.caller, "target")
    await pair.target.stop()
    assert pair.target.process.returncode == 0, pair.target.log_tail()

    async def gone() -> bool:
        functions = (await pair.caller.request("list_functions"))["result"]["functions"]
        workers = (await pair.caller.request("list_workers"))["result"]["workers"]
        return "target::echo" not in {row["function_id"] for row in functions} and (
            "target" not in {row.get("name") for row in workers}
        )

    await wait_until(gone, what="the target's function and row are gone", interval=0.05)
    with trio.fail_after(1.5):
        reply = await pair.caller.call("target::echo", 1, timeout_ms=2000)
    assert reply["error"]["code"] == "function_not_found"
