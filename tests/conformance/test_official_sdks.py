"""The official SDKs, unmodified, against a real engine, each in its own process, and
paired with each other and with the trio SDK (spec §10: A1-A6, E1).

Labels as in the spec: P4 / P11 / P25 are PyPI iii-sdk 0.4.1 / 0.11.6 / 0.25.0, N3 / N11 /
N22 are npm iii-sdk 0.3.0 / 0.11.6 / 0.22.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from iii_trio.runtime.engine import Engine
from iii_trio.sdk import III, InvocationError
from tests.conformance.harness import SDKS, SdkWorker, sdk_worker
from tests.support.engine import worker_url
from tests.support.waiting import wait_until

# Cross-SDK pairs of the spec (A3), each tested in both directions.
PAIRS = [("N3", "P4"), ("N11", "P11"), ("N22", "P25"), ("N3", "P25")]
# Versions whose handler errors carry a stacktrace (spec §9.2).
STACKTRACE_SDKS = {"P11", "P25", "N11", "N22", "trio"}


async def wait_for_functions(engine: Engine, *function_ids: str) -> None:
    # Real time: the SDK processes register on their own schedule.
    await wait_until(
        lambda: all(f in engine.registry.functions for f in function_ids),
        what=f"the SDKs register {', '.join(function_ids)}",
        timeout=60,
    )


def prefix(label: str) -> str:
    return label.lower()


def assert_failed(reply: dict[str, Any], caller: str, code: str, text: str) -> None:
    assert not reply["ok"], reply
    error = reply["error"]
    if caller == "P4":  # P4 raises Exception(str(error_dict))
        assert error["type"] == "Exception"
        assert code in error["message"]
        assert text in error["message"]
    else:
        assert error["code"] == code
        assert text in error["message"]


# Each pair in both directions, one test per scenario and direction: "caller->target".
DIRECTED = [(a, b) for a, b in PAIRS] + [(b, a) for a, b in PAIRS]


@pytest.fixture(params=DIRECTED, ids=[f"{a}->{b}" for a, b in DIRECTED])
async def pair(
    request: pytest.FixtureRequest, engine: Engine, tmp_path: Path
) -> AsyncIterator[dict[str, SdkWorker]]:
    """The caller's and the target's workers, caller first."""
    url = worker_url(engine)
    a, b = request.param
    async with sdk_worker(a, url, prefix(a), tmp_path) as first:
        async with sdk_worker(b, url, prefix(b), tmp_path) as second:
            await wait_for_functions(engine, f"{prefix(a)}::echo", f"{prefix(b)}::echo")
            yield {a: first, b: second}


def directions(workers: dict[str, SdkWorker]) -> list[tuple[str, SdkWorker, str]]:
    """(caller label, caller worker, target label) of the fixture's direction."""
    (a, first), (b, _) = workers.items()
    return [(a, first, b)]


async def test_cross_sdk_sync_calls(pair: dict[str, SdkWorker], engine: Engine) -> None:
    for caller_label, caller, target in directions(pair):
        reply = await caller.call(f"{prefix(target)}::echo", {"hello": caller_label, "n": [1]})
        assert reply["ok"], reply
        result = reply["result"]
        assert result.pop("_caller_worker_id") in engine.connections
        assert result == {"hello": caller_label, "n": [1]}


async def test_error_propagation(pair: dict[str, SdkWorker]) -> None:
    for caller_label, caller, target in directions(pair):
        reply = await caller.call(f"{prefix(target)}::boom", {})
        assert_failed(reply, caller_label, "invocation_failed", "kaboom")
        if caller_label != "P4" and target in STACKTRACE_SDKS:
            assert reply["error"]["stacktrace"], reply


async def test_unknown_function_fails_fast(pair: dict[str, SdkWorker]) -> None:
    for caller_label, caller, _ in directions(pair):
        with trio.fail_after(1.5):  # well inside the 2 s client timeout: not a timeout
            reply = await caller.call("nope::x", {}, timeout_ms=2000)
        assert_failed(reply, caller_label, "function_not_found", "nope::x")


async def test_void_runs_the_target_exactly_once(pair: dict[str, SdkWorker]) -> None:
    for _, caller, target in directions(pair):
        reply = await caller.request("void", function_id=f"{prefix(target)}::count", data={})
        assert reply["ok"], reply
        assert reply["result"] is None

        async def counted(caller: SdkWorker = caller, target: str = target) -> bool:
            return bool((await caller.call(f"{prefix(target)}::read_count", {}))["result"]["count"])

        await wait_until(counted, what="the target counts the void call")
        await trio.sleep(0.2)  # real time (SDK processes): a wrong second delivery shows by now
        assert (await caller.call(f"{prefix(target)}::read_count", {}))["result"] == {"count": 1}


async def test_missing_data_is_delivered_as_null(pair: dict[str, SdkWorker]) -> None:
    # E1: P4 trigger(x, None) and N3 trigger(x, undefined) omit `data` on the wire.
    for _, caller, target in directions(pair):
        reply = await caller.call(f"{prefix(target)}::echo", None)
        assert reply == {"seq": reply["seq"], "ok": True, "result": None}


async def test_worker_rows_and_function_rows(pair: dict[str, SdkWorker]) -> None:
    for caller_label, caller, target in directions(pair):
        # The metadata call is void and may land after the registrations (spec §3.3).

        async def target_row(caller: SdkWorker = caller, target: str = target) -> Any:
            workers = (await caller.call("engine::workers::list", {}))["result"]["workers"]
            rows = {row["name"]: row for row in workers}
            return (workers, rows) if prefix(target) in rows else None

        workers, rows = await wait_until(
            target_row, what="the target's worker row", timeout=20, interval=0.05
        )
        # A13: telemetry sockets (N3's second "/" socket, /otel) never become worker rows.
        assert len(workers) == 2, workers
        family, version = SDKS[target]
        assert rows[prefix(target)]["runtime"] == ("python" if family == "py" else "node")
        assert rows[prefix(target)]["version"] == version
        assert f"{prefix(target)}::echo" in rows[prefix(target)]["functions"]
        functions = (await caller.call("engine::functions::list", {}))["result"]["functions"]
        assert f"{prefix(target)}::boom" in {row["function_id"] for row in functions}, caller_label


@pytest.mark.parametrize("caller_label", ["N22", "N11", "N3", "P4"])
async def test_errors_from_a_p25_target(engine: Engine, tmp_path: Path, caller_label: str) -> None:
    # A4 as the spec states it: a P25 handler raises ValueError("kaboom").
    url = worker_url(engine)
    async with (
        sdk_worker("P25", url, "p25", tmp_path),
        sdk_worker(caller_label, url, prefix(caller_label), tmp_path) as caller,
    ):
        await wait_for_functions(engine, "p25::boom", f"{prefix(caller_label)}::echo")
        reply = await caller.call("p25::boom", {})
    assert_failed(reply, caller_label, "invocation_failed", "kaboom")
    if caller_label in ("N22", "N11"):
        assert reply["error"]["type"] in ("InvocationError", "IIIInvocationError")
        assert reply["error"]["stacktrace"]
    if caller_label == "N3":  # rejects with the raw {code, message, stacktrace} object
        assert reply["error"]["type"] == "object"


# --- the trio SDK paired with each official SDK ------------------------------------------


@pytest.fixture
async def trio_worker(engine: Engine) -> AsyncIterator[III]:
    iii = III(worker_url(engine), worker_name="trio", shutdown_timeout=1)
    count = {"n": 0}

    @iii.function(id="trio::echo")
    async def echo(data: Any) -> Any:
        return data

    @iii.function(id="trio::boom")
    async def boom(data: Any) -> Any:
        raise ValueError("kaboom")

    @iii.function(id="trio::count")
    async def counter(data: Any) -> Any:
        count["n"] += 1
        return count

    async with iii.connect():
        yield iii


@pytest.mark.parametrize("label", list(SDKS))
async def test_trio_sdk_and_official_sdk_call_each_other(
    label: str, engine: Engine, trio_worker: III, tmp_path: Path
) -> None:
    async with sdk_worker(label, worker_url(engine), prefix(label), tmp_path) as official:
        await wait_for_functions(engine, f"{prefix(label)}::echo", "trio::echo")
        result = await trio_worker.trigger(f"{prefix(label)}::echo", {"from": "trio"})
        assert result == {"from": "trio", "_caller_worker_id": trio_worker.worker_id}
        reply = await official.call("trio::echo", {"from": label})
        assert reply["ok"], reply
        assert reply["result"]["from"] == label
        with pytest.raises(InvocationError) as info:
            await trio_worker.trigger(f"{prefix(label)}::boom", {})
        assert info.value.code == "invocation_failed"
        assert "kaboom" in info.value.message
        assert_failed(await official.call("trio::boom", {}), label, "invocation_failed", "kaboom")
        if label != "P4":
            assert (await official.call("trio::boom", {}))["error"]["stacktrace"]
