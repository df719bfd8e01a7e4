"""Hostile queue input against a real engine process (issue 16, item 10): the figures of the
"Hostile input" table in docs/reliability.md.

    .venv/bin/python bench/queue_flood.py [--attack enqueue-race|dlq-flood ...] [--json PATH]

- ``enqueue-race``: one worker starts 40 topics x 10,010 enqueues with nothing subscribed
  (``file_based``, so each one awaits its SQLite write), up to ``--in-flight`` at once.
- ``dlq-flood``: one worker binds an always-failing function and enqueues 30,000 jobs
  (``max_attempts: 1``): every one is dead-lettered.

For each: how many enqueues were accepted, the backlog / DLQ sizes the engine reports
(``engine::modules::list``), the engine's RSS (peak and after) and CPU seconds, and the
latency of a good client calling ``engine::workers::list`` every 20 ms meanwhile.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import cpu_seconds, rss_bytes
from modules import engine

from iii_trio.sdk import III, InvocationError


def peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def queue_config(tmp: Path, **adapter: Any) -> str:
    settings = {"store_method": "file_based", "file_path": str(tmp / "queue.db")} | adapter
    inline = ", ".join(f"{key}: {json.dumps(value)}" for key, value in settings.items())
    return (
        "  - class: modules::queue::QueueModule\n    config:\n      adapter:\n"
        f"        class: modules::queue::BuiltinQueueAdapter\n        config: {{{inline}}}\n"
    )


async def good_client(url: str, stop: trio.Event, latencies: list[float]) -> None:
    async with III(url, worker_name="good").connect() as client:
        while not stop.is_set():
            start = time.perf_counter()
            await client.trigger("engine::workers::list", {})
            latencies.append(time.perf_counter() - start)
            await trio.sleep(0.02)


async def queue_status(client: III) -> dict[str, Any]:
    listed = await client.trigger("engine::modules::list", {})
    [queue] = [m for m in listed["modules"] if m["name"] == "queue"]
    status: dict[str, Any] = queue["status"]
    return status


async def attack(args: argparse.Namespace, tmp: Path, name: str) -> dict[str, Any]:
    (tmp / name).mkdir()
    settings = {"max_attempts": 1} if name == "dlq-flood" else {}
    modules = queue_config(tmp / name, **settings)
    async with engine(tmp, modules) as (url, pid):
        latencies: list[float] = []
        stop = trio.Event()
        outcomes: Counter[str] = Counter()
        cpu0 = cpu_seconds(pid)
        attacker = III(url, worker_name="hostile")

        @attacker.function(id="poison::eat")
        async def eat(data: Any) -> None:
            raise RuntimeError("always fails")

        if name == "dlq-flood":
            attacker.register_trigger("queue", "poison::eat", {"topic": "poison"})
            messages = [("poison", n) for n in range(args.dlq_jobs)]
        else:
            messages = [(f"t{t}", n) for t in range(args.topics) for n in range(args.per_topic)]
        limiter = trio.CapacityLimiter(args.in_flight)
        async with attacker.connect(), trio.open_nursery() as nursery:
            nursery.start_soon(good_client, url, stop, latencies)
            await trio.sleep(0.5)
            start = time.perf_counter()

            async def enqueue(topic: str, n: int) -> None:
                async with limiter:
                    try:
                        await attacker.trigger("enqueue", {"topic": topic, "data": {"n": n}})
                    except InvocationError as exc:
                        outcomes[exc.code] += 1
                    else:
                        outcomes["accepted"] += 1

            async with trio.open_nursery() as flood:
                for topic, n in messages:
                    flood.start_soon(enqueue, topic, n)
            status = await queue_status(attacker)
            if name == "dlq-flood":
                while sum(status.get("dlq", {}).values()) + sum(
                    status.get("dlq_dropped", {}).values()
                ) < len(messages):
                    await trio.sleep(0.2)
                    status = await queue_status(attacker)
            elapsed = time.perf_counter() - start
            stop.set()
        latencies.sort()
        return {
            "attack": name,
            "enqueues": len(messages),
            "outcomes": dict(outcomes),
            "backlog_total": sum(status.get("backlog", {}).values()),
            "backlog_max_per_topic": max(status.get("backlog", {}).values(), default=0),
            "dlq": status.get("dlq"),
            "dlq_dropped": status.get("dlq_dropped"),
            "seconds": round(elapsed, 1),
            "engine_cpu_s": round(cpu_seconds(pid) - cpu0, 1),
            "engine_rss_mb": round(rss_bytes(pid) / 2**20),
            "engine_peak_rss_mb": round(peak_rss(pid) / 2**20),
            "good_client_calls": len(latencies),
            "good_client_p50_ms": round(statistics.median(latencies) * 1000, 1),
            "good_client_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
            "good_client_max_ms": round(latencies[-1] * 1000, 1),
        }


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.attack:
            row = await attack(args, Path(tmp), name)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--attack",
        nargs="+",
        default=["enqueue-race", "dlq-flood"],
        choices=["enqueue-race", "dlq-flood"],
    )
    parser.add_argument("--topics", type=int, default=40)
    parser.add_argument("--per-topic", type=int, default=10_010)
    parser.add_argument("--dlq-jobs", type=int, default=30_000)
    parser.add_argument("--in-flight", type=int, default=10_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = trio.run(main_async, args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


with contextlib.suppress(KeyboardInterrupt):
    if __name__ == "__main__":
        main()
