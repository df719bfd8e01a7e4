"""SIGKILL faults: a worker killed in the middle of calls, the engine killed and restarted
on file_based storage. Nothing is lost and nobody waits for a timeout."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from iii_trio.sdk import III, InvocationError
from tests.conformance.harness import SdkWorker, sdk_worker
from tests.reliability.support import (
    engine_process,
    free_port,
    http_block,
    modules,
    queue_block,
    record,
    start_engine_process,
    state_block,
    stop_served_engine,
    stream_block,
    trio_fleet,
)
from tests.support.waiting import wait_until

# The victim's handler sleeps this long: any answer sooner than it came from the kill.
HANDLER_SECONDS = 30
# How soon after the kill both callers must have their error.
PROMPT_SECONDS = 5.0
RECONNECT_TIMEOUT = 60.0


@asynccontextmanager
async def victim_worker(kind: str, url: str, log_dir: Path) -> AsyncIterator[tuple[str, Any]]:
    """A worker in its own process providing ``<name>::sleepy``: (function id, process)."""
    if kind == "trio":
        async with trio_fleet(url, "victim", 1, log_dir) as fleet:
            yield "victim-0::sleepy", fleet.process
    else:
        name = f"victim{kind.lower()}"
        async with sdk_worker(kind, url, name, log_dir, bare=True) as worker:
            await worker.register(f"{name}::sleepy", "sleep", sleep_ms=HANDLER_SECONDS * 1000)
            yield f"{name}::sleepy", worker.process


async def running_calls(caller: III, function_id: str) -> int:
    rows = (await caller.trigger("engine::invocations::list", {}))["invocations"]
    return sum(1 for row in rows if row["function_id"] == function_id and row["state"] == "running")


@pytest.mark.parametrize("kind", ["trio", "P25", "N22"])
async def test_a_worker_killed_mid_call_fails_its_callers_at_once(
    tmp_path: Path, kind: str
) -> None:
    http_port = free_port()
    async with (
        engine_process(tmp_path, modules(http_block(http_port))) as served,
        victim_worker(kind, served.url, tmp_path) as (function_id, process),
        III(served.url, worker_name="caller").connect() as caller,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=60) as http,
    ):
        caller.register_trigger("http", function_id, {"api_path": "victim", "http_method": "POST"})
        outcomes: dict[str, Any] = {}
        data = {"n": 1}  # every victim sleeps HANDLER_SECONDS by default

        async def worker_call() -> None:
            try:
                outcomes["worker"] = await caller.trigger(function_id, data, timeout=60)
            except InvocationError as error:
                outcomes["worker"] = error
            outcomes["worker_at"] = trio.current_time()

        async def http_call() -> None:
            async def routed() -> bool:
                return (await http.get("/victim")).status_code == 405  # 404 before it

            # The route appears once the binding is applied (real time: the engine process).
            await wait_until(routed, what="/victim is routed", timeout=20, interval=0.05)
            outcomes["http"] = await http.post("/victim", json=data)
            outcomes["http_at"] = trio.current_time()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker_call)
            nursery.start_soon(http_call)

            async def both_running() -> bool:
                return await running_calls(caller, function_id) >= 2

            await wait_until(both_running, what="both calls run", timeout=30, interval=0.05)
            process.kill()
            killed_at = trio.current_time()
        worker_error = outcomes["worker"]
        assert isinstance(worker_error, InvocationError), worker_error
        assert worker_error.code == "invocation_stopped"
        assert outcomes["http"].status_code == 500
        assert outcomes["http"].json()["error"]["code"] == "invocation_stopped"
        assert outcomes["worker_at"] - killed_at < PROMPT_SECONDS
        assert outcomes["http_at"] - killed_at < PROMPT_SECONDS
        record(
            "kill_worker",
            worker=kind,
            caller_error_after_ms=round((outcomes["worker_at"] - killed_at) * 1000, 1),
            http_error_after_ms=round((outcomes["http_at"] - killed_at) * 1000, 1),
        )
        # The engine no longer lists the function, and nothing is left in flight.
        functions = [row["function_id"] for row in await caller.list_functions()]
        assert function_id not in functions
        assert await running_calls(caller, function_id) == 0


STATE_KEYS = 200
BACKLOG_JOBS = 40


async def call_until_it_answers(caller: III, function_id: str) -> Any:
    """Poll ``function_id`` until it answers (its worker reconnects and re-registers)."""

    async def answer() -> tuple[Any] | None:
        try:
            return (await caller.trigger(function_id, {"ping": function_id}, timeout=5),)
        except InvocationError:  # not registered yet, connection lost: retry
            return None

    what = f"{function_id} answers"
    [result] = await wait_until(answer, what=what, timeout=RECONNECT_TIMEOUT, interval=0.1)
    return result


async def official_call_until_it_answers(worker: SdkWorker, function_id: str) -> Any:
    async def answer() -> tuple[Any] | None:
        reply = await worker.call(function_id, {"from": worker.label}, timeout_ms=5000)
        return (reply["result"],) if reply["ok"] else None

    what = f"{function_id} answers {worker.label}"
    [result] = await wait_until(answer, what=what, timeout=RECONNECT_TIMEOUT, interval=0.2)
    return result


async def test_engine_killed_and_restarted_keeps_its_stores_and_every_sdk_comes_back(
    tmp_path: Path,
) -> None:
    """State keys, stream items and a queue backlog, all file_based, survive the kill."""
    config = modules(
        state_block(tmp_path / "state"),
        stream_block(tmp_path / "streams.db"),
        queue_block(tmp_path / "queue.db", backoff_ms=100),
    )
    (tmp_path / "state").mkdir()
    first = await start_engine_process(tmp_path, config)
    port = first.port
    handled: set[int] = set()
    caller = III(first.url, worker_name="caller", reconnect_initial=0.05, reconnect_max=0.3)

    @caller.function(id="trio::echo")
    async def echo(data: Any) -> Any:
        return data

    @caller.function(id="jobs::handle")
    async def handle(job: dict[str, Any]) -> None:
        handled.add(job["n"])

    restarted = None
    try:
        async with (
            caller.connect(),
            sdk_worker("P25", first.url, "p25", tmp_path) as p25,
            sdk_worker("N22", first.url, "n22", tmp_path) as n22,
        ):
            for n in range(STATE_KEYS):
                await caller.trigger("state::set", {"scope": "s", "key": f"k{n:03}", "value": n})
                item = {"stream_name": "chat", "group_id": "room", "item_id": f"m{n:03}"}
                await caller.trigger("stream::set", {**item, "data": n})
            # A backlog: jobs enqueued while nothing subscribes to the topic.
            for n in range(BACKLOG_JOBS):
                await caller.trigger("enqueue", {"topic": "later", "data": {"n": n}})
            first.process.kill()
            await first.process.wait()

            restarted = await start_engine_process(tmp_path, config, port=port)
            up_at = trio.current_time()
            # Every SDK reconnects on its own and replays its registrations.
            assert (await call_until_it_answers(caller, "trio::echo"))["ping"] == "trio::echo"
            assert (await call_until_it_answers(caller, "p25::echo"))["ping"] == "p25::echo"
            assert (await call_until_it_answers(caller, "n22::echo"))["ping"] == "n22::echo"
            # ... and can call out again.
            assert (await official_call_until_it_answers(p25, "trio::echo"))["from"] == "P25"
            assert (await official_call_until_it_answers(n22, "trio::echo"))["from"] == "N22"
            all_back_after = trio.current_time() - up_at

            values = await caller.trigger("state::list", {"scope": "s"})
            assert sorted(values) == list(range(STATE_KEYS))
            items = await caller.trigger(
                "stream::list", {"stream_name": "chat", "group_id": "room"}
            )
            assert sorted(items) == list(range(STATE_KEYS))
            caller.register_trigger("queue", "jobs::handle", {"topic": "later"})
            await wait_until(
                lambda: len(handled) >= BACKLOG_JOBS,
                what="the backlog is handled",
                timeout=30,
                interval=0.05,
            )
            assert handled == set(range(BACKLOG_JOBS))
            record(
                "kill_engine",
                state_keys_kept=len(values),
                stream_items_kept=len(items),
                backlog_jobs_kept=len(handled),
                sdks_back=["trio", "P25", "N22"],
                seconds_until_every_sdk_answers=round(all_back_after, 2),
            )
    finally:
        await stop_served_engine(first)
        if restarted is not None:
            await stop_served_engine(restarted)
    assert restarted is not None
    assert "Traceback" not in restarted.log_text(), restarted.describe()


OLDER_SDKS = ["P4", "P11", "N3", "N11"]


async def test_older_official_sdks_come_back_after_the_engine_is_killed(tmp_path: Path) -> None:
    """P25 and N22 are in the test above; the older official versions must come back too."""
    first = await start_engine_process(tmp_path)
    caller = III(first.url, worker_name="caller", reconnect_initial=0.05, reconnect_max=0.3)

    @caller.function(id="trio::echo")
    async def echo(data: Any) -> Any:
        return data

    restarted = None
    back_after: dict[str, float] = {}
    try:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(caller.connect())
            workers = [
                await stack.enter_async_context(
                    sdk_worker(label, first.url, label.lower(), tmp_path)
                )
                for label in OLDER_SDKS
            ]
            first.process.kill()
            await first.process.wait()
            restarted = await start_engine_process(tmp_path, port=first.port)
            up_at = trio.current_time()
            for worker in workers:
                function_id = f"{worker.name}::echo"
                assert (await call_until_it_answers(caller, function_id))["ping"] == function_id
                assert (await official_call_until_it_answers(worker, "trio::echo"))[
                    "from"
                ] == worker.label
                back_after[worker.label] = round(trio.current_time() - up_at, 2)
    finally:
        await stop_served_engine(first)
        if restarted is not None:
            await stop_served_engine(restarted)
    assert restarted is not None
    assert "Traceback" not in restarted.log_text(), restarted.describe()
    record("kill_engine_older_sdks", seconds_until_answering=back_after)
