"""Module throughput through a real engine process: state ops, queue jobs, pub/sub fan-out.

    .venv/bin/python bench/modules.py [--quick] [--only state|queue|pubsub ...] [--json PATH]

The engine runs as ``iii-trio serve`` in its own process; the workers (trio SDK clients)
run together in this process, so at 8+ workers this process's CPU can be the limit: the
engine's CPU seconds per operation are reported next to the rates for that reason. Every
result is checked (a state read returns what was written, every job and every published
message arrives exactly the expected number of times).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import cpu_seconds, write_results
from run import free_port

from iii_trio.sdk import III

SERVE = [str(Path(sys.executable).with_name("iii-trio")), "serve", "--log-level", "WARNING"]


@contextlib.asynccontextmanager
async def engine(tmp: Path, modules: str) -> AsyncIterator[tuple[str, int]]:
    port = free_port()
    config = tmp / f"engine-{port}.yaml"
    config.write_text(f"port: {port}\nmodules:\n{modules}")
    process = await trio.lowlevel.open_process([*SERVE, "--config", str(config)], cwd=tmp)
    try:
        with trio.fail_after(30):
            while True:
                try:
                    await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await trio.sleep(0.02)
        yield f"ws://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        await process.wait()


@contextlib.asynccontextmanager
async def redis(tmp: Path) -> AsyncIterator[str]:
    port = free_port()
    program = shutil.which("redis-server")
    if program is None:
        raise RuntimeError("redis-server is not installed (make services)")
    argv = [program, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp)]
    process = await trio.lowlevel.open_process(argv, stdout=subprocess.DEVNULL)
    try:
        await trio.sleep(0.3)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        await process.wait()


async def timed(engine_pid: int, ops: int, body: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    cpu0, start = cpu_seconds(engine_pid), time.perf_counter()
    await body()
    elapsed = time.perf_counter() - start
    return {
        "ops": ops,
        "ops_per_s": ops / elapsed,
        "engine_cpu_us_per_op": (cpu_seconds(engine_pid) - cpu0) / ops * 1e6,
    }


async def clients(url: str, count: int, stack: contextlib.AsyncExitStack) -> list[III]:
    return [
        await stack.enter_async_context(III(url, worker_name=f"bench{n}").connect())
        for n in range(count)
    ]


# --- state --------------------------------------------------------------------------------


def state_module(adapter: str, tmp: Path, redis_url: str) -> str:
    head = "  - class: modules::state::StateModule\n    config:\n      adapter:\n"
    if adapter == "redis":
        body = "class: modules::state::adapters::RedisAdapter\n"
        config = f"config: {{redis_url: '{redis_url}'}}\n"
    else:
        body = "class: modules::state::adapters::KvStore\n"
        config = f"config: {{store_method: {adapter}, file_path: '{tmp / 'state.db'}'}}\n"
    return head + "        " + body + "        " + config


async def state_level(pid: int, iiis: list[III], per: int) -> list[dict[str, Any]]:
    """set, get and update, ``per`` calls from each worker at once."""
    workers = len(iiis)
    scope = f"w{workers}"

    async def set_op(iii: III, w: int, n: int) -> None:
        await iii.trigger("state::set", {"scope": scope, "key": f"{w}:{n}", "value": {"n": n}})

    async def get_op(iii: III, w: int, n: int) -> None:
        if await iii.trigger("state::get", {"scope": scope, "key": f"{w}:{n}"}) != {"n": n}:
            raise AssertionError("state::get returned something else")

    async def update_op(iii: III, w: int, n: int) -> None:
        ops = [{"type": "increment", "path": "count", "by": 1}]
        await iii.trigger("state::update", {"scope": scope, "key": "counter", "ops": ops})

    async def lane(op: Callable[[III, int, int], Awaitable[None]], iii: III, w: int) -> None:
        for n in range(per):
            await op(iii, w, n)

    rows = []
    for name, op in (("set", set_op), ("get", get_op), ("update", update_op)):

        async def body(op: Any = op) -> None:
            async with trio.open_nursery() as nursery:
                for w, iii in enumerate(iiis):
                    nursery.start_soon(lane, op, iii, w)

        rows.append({"workers": workers, "op": name, **await timed(pid, per * workers, body)})
    total = await iiis[0].trigger("state::get", {"scope": scope, "key": "counter"})
    if total != {"count": per * workers}:
        raise AssertionError(f"lost increments: {total}")
    return rows


async def bench_state(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    rows = []
    for adapter in ("in_memory", "file_based", "redis"):
        async with contextlib.AsyncExitStack() as stack:
            url = await stack.enter_async_context(redis(tmp)) if adapter == "redis" else ""
            ws, pid = await stack.enter_async_context(engine(tmp, state_module(adapter, tmp, url)))
            for workers in (1, 8):
                iiis = await clients(ws, workers, stack)
                for row in await state_level(pid, iiis, args.state_ops // workers):
                    rows.append({"adapter": adapter, **row})
    return rows


# --- queue --------------------------------------------------------------------------------


def queue_module(store: str, tmp: Path, redis_url: str) -> str:
    head = "  - class: modules::queue::QueueModule\n    config:\n      adapter:\n"
    if store == "redis":
        return (
            head + "        class: modules::queue::RedisAdapter\n"
            f"        config: {{redis_url: '{redis_url}', concurrency: 32}}\n"
        )
    return (
        head + "        class: modules::queue::BuiltinQueueAdapter\n"
        f"        config: {{store_method: {store}, file_path: '{tmp / f'queue-{store}.db'}',"
        " concurrency: 32}\n"
    )


async def queue_run(args: argparse.Namespace, ws: str, pid: int) -> dict[str, Any]:
    """Enqueue ``args.jobs`` jobs from 8 lanes; until a consumer handled each exactly once."""
    seen: dict[int, int] = {}
    done = trio.Event()
    consumer = III(ws, worker_name="consumer")

    @consumer.function(id="bench::job")
    async def job(data: Any) -> None:
        seen[data["n"]] = seen.get(data["n"], 0) + 1
        if len(seen) == args.jobs:
            done.set()

    consumer.register_trigger("queue", "bench::job", {"topic": "bench"})
    async with consumer.connect(), III(ws, worker_name="producer").connect() as producer:
        await trio.sleep(0.5)  # the binding reaches the engine

        async def produce(lane: int) -> None:
            for n in range(lane, args.jobs, 8):
                await producer.trigger("enqueue", {"topic": "bench", "data": {"n": n}})

        async def body() -> None:
            async with trio.open_nursery() as nursery:
                for lane in range(8):
                    nursery.start_soon(produce, lane)
            with trio.fail_after(120):
                await done.wait()

        row = await timed(pid, args.jobs, body)
        await trio.sleep(0.5)  # a second delivery of any job would have landed by now
    if set(seen.values()) != {1}:
        raise AssertionError("a job was handled twice or not at all")
    return row


async def bench_queue(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    rows = []
    for store in ("in_memory", "file_based", "redis"):
        async with contextlib.AsyncExitStack() as stack:
            url = await stack.enter_async_context(redis(tmp)) if store == "redis" else ""
            ws, pid = await stack.enter_async_context(engine(tmp, queue_module(store, tmp, url)))
            rows.append({"store": store, **await queue_run(args, ws, pid)})
    return rows


# --- pub/sub --------------------------------------------------------------------------------


async def pubsub_run(args: argparse.Namespace, ws: str, pid: int, count: int) -> dict[str, Any]:
    """``count`` subscribers; publish ``args.messages``; until every one received each."""
    received = [0]
    expected = count * args.messages
    done = trio.Event()

    async def on(data: Any) -> None:
        received[0] += 1
        if received[0] == expected:
            done.set()

    async with contextlib.AsyncExitStack() as stack:
        for n in range(count):
            worker = III(ws, worker_name=f"sub{n}")
            worker.register_function(f"sub{n}::on", on)
            worker.register_trigger("subscribe", f"sub{n}::on", {"topic": "news"})
            await stack.enter_async_context(worker.connect())
        publisher = await stack.enter_async_context(III(ws, worker_name="publisher").connect())
        await trio.sleep(0.5 + count / 100)  # every binding reaches the engine

        async def body() -> None:
            for n in range(args.messages):
                await publisher.trigger("publish", {"topic": "news", "data": {"n": n}})
            with trio.fail_after(120):
                await done.wait()

        return await timed(pid, expected, body)


async def bench_pubsub(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    rows = []
    for count in args.fan_out:
        async with engine(tmp, "  - class: modules::pubsub::PubSubModule\n") as (ws, pid):
            row = await pubsub_run(args, ws, pid, count)
            rows.append({"subscribers": count, "messages": args.messages, **row})
    return rows


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="iii-bench-modules-") as tmpdir:
        tmp = Path(tmpdir)
        benches = {"state": bench_state, "queue": bench_queue, "pubsub": bench_pubsub}
        chosen = [name for name in benches if name in args.only]
        return {name: await benches[name](args, tmp) for name in chosen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--only",
        action="append",
        choices=("state", "queue", "pubsub"),
        help="run only this part (repeatable; default: all)",
    )
    args = parser.parse_args()
    args.only = args.only or ["state", "queue", "pubsub"]
    args.state_ops, args.jobs, args.messages = (400, 200, 20) if args.quick else (4000, 3000, 200)
    args.fan_out = [1, 8] if args.quick else [1, 8, 32, 128]
    figures = trio.run(main_async, args)
    print(f"{'state':<10}{'adapter':>12}{'workers':>9}{'op':>8}{'ops/s':>9}{'engine µs/op':>14}")
    for row in figures.get("state", ()):
        print(
            f"{'':<10}{row['adapter']:>12}{row['workers']:>9}{row['op']:>8}"
            f"{row['ops_per_s']:>9.0f}{row['engine_cpu_us_per_op']:>14.0f}"
        )
    print(f"\n{'queue':<10}{'store':>12}{'jobs':>9}{'jobs/s':>9}{'engine µs/job':>15}")
    for row in figures.get("queue", ()):
        print(
            f"{'':<10}{row['store']:>12}{row['ops']:>9}{row['ops_per_s']:>9.0f}"
            f"{row['engine_cpu_us_per_op']:>15.0f}"
        )
    print(f"\n{'pubsub':<10}{'subscribers':>12}{'deliveries':>11}{'/s':>9}{'engine µs/each':>16}")
    for row in figures.get("pubsub", ()):
        print(
            f"{'':<10}{row['subscribers']:>12}{row['ops']:>11}{row['ops_per_s']:>9.0f}"
            f"{row['engine_cpu_us_per_op']:>16.0f}"
        )
    write_results(figures, args.json, "modules")


if __name__ == "__main__":
    main()
