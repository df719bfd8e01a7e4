"""Reconnect storm (cf. iii-hq/iii#2178): 200 trio-SDK workers and official Python and Node
workers reconnect at once after an engine restart. Every worker's registrations come back
(each of its functions answers) and a probe call keeps succeeding within its deadline while
the storm goes on."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

from iii_trio.sdk import III, InvocationError
from tests.conformance.harness import sdk_worker
from tests.reliability.support import (
    Fleet,
    record,
    start_engine_process,
    stop_served_engine,
    trio_fleet,
)
from tests.support.waiting import wait_until

FLEETS = 4
PER_FLEET = 50  # 200 trio-SDK workers in 4 processes
OFFICIAL = ["P25", "N22"]
PROBE_DEADLINE = 2.0  # each probe call must answer within this
PROBE_INTERVAL = 0.05
STORM_TIMEOUT = 90.0


async def every_function_answers(caller: III, function_ids: list[str]) -> None:
    async def check(function_id: str, limiter: trio.CapacityLimiter) -> None:
        async with limiter:
            assert await caller.trigger(function_id, {"id": function_id}, timeout=10) == {
                "id": function_id,
                "_caller_worker_id": caller.worker_id,
            }

    limiter = trio.CapacityLimiter(32)
    async with trio.open_nursery() as nursery:
        for function_id in function_ids:
            nursery.start_soon(check, function_id, limiter)


async def registered(caller: III, function_ids: set[str]) -> int:
    listed = {row["function_id"] for row in await caller.list_functions()}
    return len(function_ids & listed)


async def test_200_workers_reconnect_at_once_and_the_probe_never_misses(tmp_path: Path) -> None:
    served = await start_engine_process(tmp_path)
    port, url = served.port, served.url
    fleets: list[Fleet] = []
    probe_target = III(url, worker_name="probe", reconnect_initial=0.02, reconnect_max=0.1)

    @probe_target.function(id="probe::echo")
    async def echo(data: Any) -> Any:
        return data

    caller = III(url, worker_name="caller", reconnect_initial=0.02, reconnect_max=0.1)
    restarted = None
    try:
        async with AsyncExitStack() as stack:
            for n in range(FLEETS):
                fleets.append(
                    await stack.enter_async_context(
                        trio_fleet(url, f"storm{n}", PER_FLEET, tmp_path)
                    )
                )
            for label in OFFICIAL:
                await stack.enter_async_context(sdk_worker(label, url, label.lower(), tmp_path))
            await stack.enter_async_context(probe_target.connect())
            await stack.enter_async_context(caller.connect())
            function_ids = [f"{name}::echo" for fleet in fleets for name in fleet.names()]
            function_ids += [f"{label.lower()}::echo" for label in OFFICIAL]
            assert await registered(caller, set(function_ids)) == len(function_ids)

            await stop_served_engine(served)  # every worker is closed with 1012 at once
            restarted = await start_engine_process(tmp_path, port=port)
            up_at = trio.current_time()
            latencies: list[float] = []
            answered_at: list[float] = []
            misses: list[str] = []
            storm_over = trio.Event()

            async def probe() -> None:
                answered_once = False
                while not storm_over.is_set():
                    started = trio.current_time()
                    try:
                        await caller.trigger("probe::echo", {"t": started}, timeout=PROBE_DEADLINE)
                    except InvocationError as error:  # the timeout included
                        if answered_once:
                            misses.append(f"{error.code}: {error.message}")
                    else:
                        answered_once = True
                        latencies.append(trio.current_time() - started)
                        answered_at.append(started)
                    await trio.sleep(PROBE_INTERVAL)  # real time: the engine process is restarting

            async with trio.open_nursery() as nursery:
                nursery.start_soon(probe)

                async def all_back() -> bool:
                    return await registered(caller, set(function_ids)) == len(function_ids)

                what = "every function is registered again"
                await wait_until(all_back, what=what, timeout=STORM_TIMEOUT, interval=0.1)
                all_back_at = trio.current_time()
                await wait_until(  # the probe answered during and after
                    lambda: len(latencies) >= 5, what="five probe answers", timeout=STORM_TIMEOUT
                )
                with trio.fail_after(STORM_TIMEOUT):
                    await every_function_answers(caller, function_ids)
                storm_over.set()
            assert misses == []
            assert max(latencies) < PROBE_DEADLINE
            workers = await caller.list_workers()
            record(
                "reconnect_storm",
                workers=len(workers),
                functions_back=len(function_ids),
                seconds_until_all_back=round(all_back_at - up_at, 2),
                probe_calls=len(latencies),
                probe_calls_during_storm=sum(1 for t in answered_at if t < all_back_at),
                probe_max_ms=round(max(latencies) * 1000, 1),
                probe_misses=len(misses),
            )
    finally:
        await stop_served_engine(served)
        if restarted is not None:
            await stop_served_engine(restarted)
    assert restarted is not None
    assert "Traceback" not in restarted.log_text(), restarted.describe()
