"""Benchmark roles on trio, each run as its own process by bench/run.py.

    roles_trio.py echo-server PORT
    roles_trio.py echo-client URL  --payloads P --in-flight F --calls N [--watch name=pid,...]
    roles_trio.py sdk-callee  URL
    roles_trio.py sdk-caller  URL  --payloads P --in-flight F --calls N [--watch ...]

The echo pair is the baseline: trio-websocket on both sides, no engine, 64 KiB reads (the
library's best setting; its default reads 4 KiB). The sdk pair is a worker calling another
worker through the engine with the trio SDK (iii_trio.sdk) on both sides.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import trio
from trio_websocket import WebSocketConnection, open_websocket_url, serve_websocket

sys.path.insert(0, str(Path(__file__).parent))
from measure import (
    WARMUP,
    Level,
    caller_arguments,
    calls_for,
    check_echo,
    emit,
    levels,
    parse_watch,
    payload,
)

from iii_trio.sdk import III

ECHO_FUNCTION = "bench::echo"
MAX_MESSAGE = 2**20


async def run_levels(
    args: argparse.Namespace, call: Callable[[str, int], Awaitable[None]], **labels: Any
) -> None:
    """Warm up, then measure every (payload, in-flight) level; one JSON row each."""
    watched = parse_watch(args.watch)
    for size, in_flight in levels(args.payloads, args.in_flight):
        calls = calls_for(size, args.calls)
        for n in range(min(WARMUP, calls)):
            await call(size, n)
        level = Level(watched)
        numbers = iter(range(calls))

        async def lane(level: Level = level, numbers: Any = numbers, size: str = size) -> None:
            for n in numbers:
                started = time.perf_counter()
                await call(size, n)
                level.record(started)

        async with trio.open_nursery() as nursery:
            for _ in range(in_flight):
                nursery.start_soon(lane)
        emit(level.row(payload=size, in_flight=in_flight, **labels))


# --- direct echo (baseline) -----------------------------------------------------------------


async def echo_server(port: int) -> None:
    async def handler(request: Any) -> None:
        ws = await request.accept()
        while True:
            try:
                await ws.send_message(await ws.get_message())
            except Exception:
                return

    await serve_websocket(
        handler,
        "127.0.0.1",
        port,
        ssl_context=None,
        max_message_size=MAX_MESSAGE,
        receive_buffer_size=None,
    )


async def echo_client(args: argparse.Namespace) -> None:
    async with open_websocket_url(
        args.target, max_message_size=MAX_MESSAGE, receive_buffer_size=None
    ) as ws:
        waiting: dict[int, trio.Event] = {}
        replies: dict[int, Any] = {}

        async def reader(ws: WebSocketConnection) -> None:
            while True:
                reply = orjson.loads(await ws.get_message())
                replies[reply["n"]] = reply
                waiting.pop(reply["n"]).set()

        async def call(size: str, n: int) -> None:
            done = waiting[n] = trio.Event()
            await ws.send_message(orjson.dumps(payload(size, n)).decode())
            await done.wait()
            check_echo(size, n, replies.pop(n))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader, ws)
            await run_levels(args, call)
            nursery.cancel_scope.cancel()


# --- through the engine, trio SDK on both sides ---------------------------------------------


async def sdk_callee(url: str) -> None:
    iii = III(url, worker_name="bench-callee")

    @iii.function(id=ECHO_FUNCTION)
    async def echo(data: Any) -> Any:
        return data

    async with iii.connect():
        print("ready", flush=True)
        await trio.sleep_forever()


async def sdk_caller(args: argparse.Namespace) -> None:
    iii = III(args.target, worker_name="bench-caller")
    async with iii.connect():
        await wait_for_function(iii, ECHO_FUNCTION)

        async def call(size: str, n: int) -> None:
            check_echo(size, n, await iii.trigger(ECHO_FUNCTION, payload(size, n), timeout=30))

        await run_levels(args, call)


async def idle_workers(url: str, count: int) -> None:
    """``count`` connected workers that register one function each, then idle (the memory
    section measures what they cost the engine)."""
    connected = 0
    all_connected = trio.Event()

    async def worker(i: int) -> None:
        nonlocal connected
        async with open_websocket_url(url) as ws:
            await ws.get_message()  # workerregistered
            frame = {"type": "registerfunction", "id": f"idle::fn{os.getpid()}_{i}"}
            await ws.send_message(orjson.dumps(frame).decode())
            connected += 1
            if connected == count:
                all_connected.set()
            while True:
                await ws.get_message()  # pings are answered by the library

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(worker, i)
        await all_connected.wait()
        print("ready", flush=True)


async def wait_for_function(iii: III, function_id: str) -> None:
    with trio.fail_after(30):
        while function_id not in {f["function_id"] for f in await iii.list_functions()}:
            await trio.sleep(0.05)


def main() -> None:
    roles = ["echo-server", "echo-client", "sdk-callee", "sdk-caller", "idle-workers"]
    args = caller_arguments(roles).parse_args()
    if args.role == "echo-server":
        trio.run(echo_server, int(args.target))
    elif args.role == "echo-client":
        trio.run(echo_client, args)
    elif args.role == "sdk-callee":
        trio.run(sdk_callee, args.target)
    elif args.role == "idle-workers":
        trio.run(idle_workers, args.target, args.calls)
    else:
        trio.run(sdk_caller, args)


if __name__ == "__main__":
    main()
