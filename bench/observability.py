"""Bounded memory with observability on: 200k invocations through a real engine process.

    .venv/bin/python bench/observability.py [--calls N] [--quick] [--json PATH]

``iii-trio serve`` runs with the OtelModule (memory exporter, default caps: 10,000 spans,
1,000 logs, 10,000 worker metric points); a trio-SDK worker answers ``bench::echo`` and
callers in this process make the calls, 32 in flight, plus one ``engine::log::info`` per 100
calls and a ``MTRC`` frame per 1,000. The engine's RSS is read from /proc before the first
call, at every tenth of the run and after the last; the run fails when the final RSS is above
:data:`RSS_CAP_MB`. The same run with the module absent gives the throughput it costs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import trio
from trio_websocket import open_websocket_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import cpu_seconds, rss_bytes, write_results
from modules import engine

from iii_trio.sdk import III

# What the engine may hold after 200k invocations with observability on. Every store is a
# ring, so RSS levels off once they are full (measured: 45.7 MB, flat from 20k calls on,
# with the spans and logs rings full); the cap leaves room for the worker-metric ring, which
# this run fills only to 2 %, and for allocator slack.
RSS_CAP_MB = 80
IN_FLIGHT = 32
OBSERVABILITY = (
    "  - class: modules::observability::OtelModule\n"
    "    config: {exporter: memory, logs_console_output: false}\n"
)


def mtrc_frame(n: int) -> bytes:
    point = {"asInt": str(n), "attributes": [{"key": "lane", "value": {"intValue": str(n)}}]}
    metric = {"name": "bench.progress", "gauge": {"dataPoints": [point]}}
    body = {"resourceMetrics": [{"resource": {}, "scopeMetrics": [{"metrics": [metric]}]}]}
    return b"MTRC" + orjson.dumps(body)


async def run(url: str, pid: int, calls: int, observed: bool) -> dict[str, Any]:
    samples: list[tuple[int, float]] = []
    callee = III(url, worker_name="callee")

    @callee.function(id="bench::echo")
    async def echo(data: Any) -> Any:
        return data

    async with callee.connect(), III(url, worker_name="caller").connect() as caller:
        await trio.sleep(0.3)  # the registration reaches the engine
        for n in range(200):  # warm-up: imports, caches, first allocations
            await caller.trigger("bench::echo", {"n": n})
        samples.append((0, rss_bytes(pid) / 2**20))
        counter = iter(range(calls))
        step = max(1, calls // 10)
        stack = contextlib.AsyncExitStack()
        ws = (
            await stack.enter_async_context(open_websocket_url(url + "/otel")) if observed else None
        )

        async def lane() -> None:
            for n in counter:
                reply = await caller.trigger("bench::echo", {"n": n, "pad": "x" * 64})
                if reply["n"] != n:
                    raise AssertionError(f"call {n}: wrong reply {reply}")
                if observed and n % 100 == 0:
                    await caller.trigger("engine::log::info", {"message": f"call {n}"})
                if ws is not None and n % 1000 == 0:
                    await ws.send_message(mtrc_frame(n))
                if (n + 1) % step == 0:
                    samples.append((n + 1, rss_bytes(pid) / 2**20))

        cpu0, start = cpu_seconds(pid), time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(IN_FLIGHT):
                nursery.start_soon(lane)
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds(pid) - cpu0
        health = await caller.trigger("engine::health::check", {}) if observed else None
        await stack.aclose()
    return {
        "observability": observed,
        "calls": calls,
        "calls_per_s": calls / elapsed,
        "engine_cpu_us_per_call": cpu / calls * 1e6,
        "rss_mb": samples,
        "rss_before_mb": samples[0][1],
        "rss_after_mb": rss_bytes(pid) / 2**20,
        "stores": {k: v["details"] for k, v in health["components"].items()} if health else None,
    }


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="iii-bench-otel-") as tmpdir:
        for observed in (False, True):
            modules = OBSERVABILITY if observed else "  []\n"
            async with engine(Path(tmpdir), modules) as (url, pid):
                rows.append(await run(url, pid, args.calls, observed))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="20k calls")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.calls = 20_000
    rows = trio.run(main_async, args)
    print(
        f"{'observability':<15}{'calls':>9}{'calls/s':>10}{'engine µs/call':>16}"
        f"{'RSS before':>12}{'RSS after':>11}"
    )
    for row in rows:
        print(
            f"{'on' if row['observability'] else 'off':<15}{row['calls']:>9}"
            f"{row['calls_per_s']:>10.0f}{row['engine_cpu_us_per_call']:>16.0f}"
            f"{row['rss_before_mb']:>10.1f}MB{row['rss_after_mb']:>9.1f}MB"
        )
    observed = rows[-1]
    print("\nengine RSS with observability on, by calls made:")
    print("  " + "  ".join(f"{n // 1000}k:{mb:.0f}MB" for n, mb in observed["rss_mb"]))
    for name, details in (observed["stores"] or {}).items():
        if "capacity" in details:
            kept = f"{details['count']}/{details['capacity']}"
            print(f"  {name}: {kept} kept, {details['dropped']} dropped")
    write_results(rows, args.json, "observability")
    verdict = "within" if observed["rss_after_mb"] <= RSS_CAP_MB else "ABOVE"
    print(
        f"engine RSS after {observed['calls']} calls: {observed['rss_after_mb']:.1f} MB, "
        f"{verdict} the {RSS_CAP_MB} MB cap"
    )
    if verdict != "within":
        sys.exit(1)


if __name__ == "__main__":
    main()
