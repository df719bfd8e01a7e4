"""Benchmark roles on the official Python iii-sdk (0.25.0), run with the SDK's interpreter.

    .deps/py-iii-sdk-0.25.0/bin/python bench/roles_official.py callee URL
    .deps/py-iii-sdk-0.25.0/bin/python bench/roles_official.py caller URL \
        --payloads P --in-flight F --calls N [--watch name=pid,...]

The SDK runs its own event loop on a thread (``register_worker``); the caller drives
``trigger_async`` from an asyncio loop of its own, one task per call in flight: the way an
asyncio application uses this SDK.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import iii

sys.path.insert(0, str(Path(__file__).parent))
from measure import caller_arguments, check_echo, payload, run_asyncio_levels

ECHO_FUNCTION = "bench::echo"


def connect(url: str, name: str) -> Any:
    worker = iii.register_worker(url, iii.InitOptions(worker_name=name))
    deadline = time.monotonic() + 30
    while worker.get_connection_state() != "connected":
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: not connected to {url}")
        time.sleep(0.02)
    return worker


def callee(url: str) -> None:
    worker = connect(url, "bench-callee")

    async def echo(data: Any) -> Any:
        return data

    worker.register_function(ECHO_FUNCTION, echo)
    print("ready", flush=True)
    while True:
        time.sleep(3600)


async def caller(args: argparse.Namespace) -> None:
    worker = connect(args.target, "bench-caller")
    deadline = time.monotonic() + 30
    while True:  # registration is fire-and-forget: wait until the engine lists the callee
        listed = await worker.trigger_async(
            {"function_id": "engine::functions::list", "payload": {}}
        )
        if ECHO_FUNCTION in {f["function_id"] for f in listed["functions"]}:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{ECHO_FUNCTION} never registered")
        await asyncio.sleep(0.05)

    async def call(size: str, n: int) -> None:
        request = {"function_id": ECHO_FUNCTION, "payload": payload(size, n), "timeout_ms": 30000}
        check_echo(size, n, await worker.trigger_async(request))

    await run_asyncio_levels(args, call)
    worker.shutdown()


def main() -> None:
    args = caller_arguments(["callee", "caller"]).parse_args()
    if args.role == "callee":
        callee(args.target)
    else:
        asyncio.run(caller(args))


if __name__ == "__main__":
    main()
