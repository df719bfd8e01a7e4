"""At least once across a crash: jobs enqueued on file_based storage (or in Redis), the engine
SIGKILLed while handlers run, restarted on the same file (or Redis) and port (spec/modules.md
§6.5). With Redis the jobs the dead engine held come back once their lease (1 s) ran out."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import trio

from iii_trio.sdk import III
from tests.conformance.conftest import start_served_engine, stop_served_engine
from tests.support.redis_server import redis_server
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # a served engine, killed and restarted

JOBS = 50
ALWAYS_FAILING = {n for n in range(JOBS) if n % 10 == 0}


def queue_config(store: str, path: Path, redis_url: str) -> str:
    if store == "redis":
        adapter = f"""class: modules::queue::RedisAdapter
        config: {{redis_url: "{redis_url}", max_attempts: 3, backoff_ms: 100,
                  concurrency: 4, visibility_timeout_ms: 1000, poll_interval_ms: 50}}"""
    else:
        adapter = f"""class: modules::queue::BuiltinQueueAdapter
        config: {{store_method: file_based, file_path: "{path}", max_attempts: 3,
                  backoff_ms: 100, concurrency: 4}}"""
    return f"""modules:
  - class: modules::queue::QueueModule
    config:
      adapter:
        {adapter}
"""


@pytest.mark.parametrize("store", ["file_based", "redis"])
async def test_every_job_is_handled_at_least_once_across_a_kill_9(
    tmp_path: Path, store: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(redis_server(tmp_path)) if store == "redis" else ""
        await _crash_and_restart(tmp_path, queue_config(store, tmp_path / "queue.db", url))


async def _crash_and_restart(tmp_path: Path, config: str) -> None:
    served = await start_served_engine(tmp_path, config)
    port = served.port
    handled: set[int] = set()
    worker = III(served.url, worker_name="consumer", reconnect_initial=0.05, reconnect_max=0.2)

    @worker.function(id="jobs::handle")
    async def handle(job: dict[str, Any]) -> None:
        await trio.sleep(0.05)  # real time: work while the engine process is killed
        if job["n"] in ALWAYS_FAILING:
            raise RuntimeError(f"job {job['n']} always fails")
        handled.add(job["n"])

    worker.register_trigger("queue", "jobs::handle", {"topic": "jobs"})
    restarted = None
    try:
        async with worker.connect():
            async with III(served.url, worker_name="producer").connect() as producer:
                for n in range(JOBS):
                    await producer.trigger("enqueue", {"topic": "jobs", "data": {"n": n}})
            # Real time: the engine runs in its own process.
            await wait_until(lambda: len(handled) >= 5, what="five jobs are handled", timeout=30)
            served.process.kill()
            await served.process.wait()
            assert len(handled) < JOBS - len(ALWAYS_FAILING)  # work was left over
            restarted = await start_served_engine(tmp_path, config, port=port)
            expected = set(range(JOBS)) - ALWAYS_FAILING
            await wait_until(  # the worker reconnects and replays its trigger
                lambda: expected <= handled, what="every good job is handled", timeout=60
            )

            async def all_dead() -> Any:
                dead = await worker.trigger("engine::queue::dlq_messages", {"queue": "jobs"})
                return dead if len(dead["messages"]) >= len(ALWAYS_FAILING) else None

            dead = await wait_until(all_dead, what="the failing jobs are dead-lettered", timeout=60)
    finally:
        await stop_served_engine(served)
        if restarted is not None:
            await stop_served_engine(restarted)
    assert handled == expected  # none lost
    assert sorted(m["job"]["data"]["n"] for m in dead["messages"]) == sorted(ALWAYS_FAILING)
