"""Soak: sustained mixed load on one engine process (calls to trio-SDK and official Python
workers, state reads and writes, queue jobs, pub/sub events, HTTP requests) for
``RELIABILITY_SOAK_SECONDS`` (3 minutes in ``make test``, an hour in ``make soak``).

Nothing is lost: every operation gets its result within its timeout and every job and
event is delivered. The engine's RSS, sampled every second, grows by less than
RSS_GROWTH_BOUND after the warm-up (the first fifth of the run)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import trio

from iii_trio.sdk import III
from tests.conformance.harness import sdk_worker
from tests.reliability.support import (
    engine_process,
    free_port,
    http_block,
    modules,
    pubsub_block,
    queue_block,
    record,
    rss_bytes,
    state_block,
)
from tests.support.waiting import wait_until

SECONDS = float(os.environ.get("RELIABILITY_SOAK_SECONDS", "180"))
TASKS_PER_KIND = 2
PAUSE = 0.01  # between one task's operations: about 100 per second per task at most
OP_TIMEOUT = 10.0
KEYS = 500  # state keys are reused, so the data set stays the same size
RSS_GROWTH_BOUND = 32 * 1024 * 1024
DRAIN_TIMEOUT = 60.0


async def test_mixed_load_loses_nothing_and_memory_stays_flat(tmp_path: Path) -> None:
    http_port = free_port()
    (tmp_path / "state").mkdir()
    config = modules(
        state_block(tmp_path / "state"),
        queue_block(tmp_path / "queue.db"),
        pubsub_block(),
        http_block(http_port, default_timeout=int(OP_TIMEOUT * 1000)),
    )
    jobs_done: set[int] = set()
    events_seen: set[int] = set()
    svc = III(worker_name="svc", reconnect_initial=0.05)

    @svc.function(id="svc::echo")
    async def echo(data: Any) -> Any:
        return data

    @svc.function(id="svc::http")
    async def http_handler(request: Any) -> Any:
        return {"body": {"n": request["body"]["n"]}}

    @svc.function(id="svc::job")
    async def job(data: Any) -> None:
        jobs_done.add(data["n"])

    @svc.function(id="svc::event")
    async def event(data: Any) -> None:
        events_seen.add(data["n"])

    svc.register_trigger("http", "svc::http", {"api_path": "soak", "http_method": "POST"})
    svc.register_trigger("queue", "svc::job", {"topic": "soak-jobs"})
    svc.register_trigger("subscribe", "svc::event", {"topic": "soak-events"})

    async with engine_process(tmp_path, config) as served:
        svc.url = served.url
        done: Counter[str] = Counter()
        lost: list[str] = []
        counter_adds = 0
        state_values: dict[str, int] = {}
        sequence = iter(range(10**9))
        rss: list[int] = []
        async with (
            svc.connect(),
            III(served.url, worker_name="load").connect() as load,
            sdk_worker("P25", served.url, "p25", tmp_path) as p25,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http,
        ):

            async def routed() -> bool:
                return (await http.get("/soak")).status_code == 405

            await wait_until(routed, what="the http route is bound", timeout=20, interval=0.05)
            stop_at = trio.current_time() + SECONDS

            async def op(kind: str) -> None:
                nonlocal counter_adds
                n = next(sequence)
                if kind == "call":
                    answer = await load.trigger("svc::echo", {"n": n}, timeout=OP_TIMEOUT)
                    assert answer["n"] == n
                elif kind == "official call":
                    reply = await p25.call("p25::echo", {"n": n}, timeout_ms=OP_TIMEOUT * 1000)
                    assert reply["ok"], reply
                    assert reply["result"]["n"] == n
                elif kind == "state":
                    key = f"k{n % KEYS}"
                    await load.trigger(
                        "state::set", {"scope": "soak", "key": key, "value": n}, timeout=OP_TIMEOUT
                    )
                    state_values[key] = n
                    ops = [{"type": "increment", "path": "n", "by": 1}]
                    await load.trigger(
                        "state::update", {"scope": "c", "key": "k", "ops": ops}, timeout=OP_TIMEOUT
                    )
                    counter_adds += 1
                elif kind == "enqueue":
                    await load.trigger(
                        "enqueue", {"topic": "soak-jobs", "data": {"n": n}}, timeout=OP_TIMEOUT
                    )
                    sent_jobs.add(n)
                elif kind == "publish":
                    await load.trigger(
                        "publish", {"topic": "soak-events", "data": {"n": n}}, timeout=OP_TIMEOUT
                    )
                    sent_events.add(n)
                else:
                    response = await http.post("/soak", json={"n": n}, timeout=OP_TIMEOUT)
                    assert response.status_code == 200, response.text
                    assert response.json() == {"n": n}
                done[kind] += 1

            sent_jobs: set[int] = set()
            sent_events: set[int] = set()

            async def keep_going(kind: str) -> None:
                while trio.current_time() < stop_at:
                    try:
                        with trio.fail_after(OP_TIMEOUT + 2):
                            await op(kind)
                    except Exception as exc:  # lost or failed: both are findings
                        lost.append(f"{kind}: {type(exc).__name__}: {exc}")
                    await trio.sleep(PAUSE)  # real time: load on the engine process

            async def sample_rss() -> None:
                while trio.current_time() < stop_at:
                    rss.append(rss_bytes(served.process))
                    await trio.sleep(1)  # real time: the engine process's RSS once a second

            kinds = ["call", "official call", "state", "enqueue", "publish", "http"]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sample_rss)
                for kind in kinds:
                    # The official worker's harness takes one request at a time on stdin.
                    for _ in range(1 if kind == "official call" else TASKS_PER_KIND):
                        nursery.start_soon(keep_going, kind)

            # Everything acknowledged is delivered and stored.
            await wait_until(
                lambda: sent_jobs <= jobs_done and sent_events <= events_seen,
                what="every acknowledged job and event is delivered",
                timeout=DRAIN_TIMEOUT,
                interval=0.1,
            )
            stored = await load.trigger("state::list", {"scope": "soak"})
            counter = await load.trigger("state::get", {"scope": "c", "key": "k"})
            rss.append(rss_bytes(served.process))
    assert lost == [], lost[:10]
    assert sorted(stored) == sorted(state_values.values())
    assert counter == {"n": counter_adds}
    warm = len(rss) // 5
    growth = max(rss[warm:]) - rss[warm]
    record(
        "soak",
        seconds=SECONDS,
        operations=dict(done),
        total=sum(done.values()),
        jobs_delivered=len(jobs_done),
        events_delivered=len(events_seen),
        lost=len(lost),
        rss_start_mib=round(rss[0] / 2**20, 1),
        rss_after_warm_up_mib=round(rss[warm] / 2**20, 1),
        rss_max_mib=round(max(rss) / 2**20, 1),
        rss_end_mib=round(rss[-1] / 2**20, 1),
        rss_growth_after_warm_up_mib=round(growth / 2**20, 1),
    )
    assert growth < RSS_GROWTH_BOUND, [round(r / 2**20, 1) for r in rss]
