"""Many trio-SDK workers in one process, for the reliability tests (one process per few
dozen workers keeps a 2-core machine responsive where one process each would not).

    python trio_fleet.py --url ws://127.0.0.1:PORT --prefix fleet --count 50

Worker ``i`` is named ``PREFIX-i`` and provides ``PREFIX-i::echo`` (returns its input) and
``PREFIX-i::sleepy`` (sleeps ``data["seconds"]``, 30 s without it, then returns
``{"slept": seconds}``). Every
worker reconnects quickly (``--reconnect-initial``, ``--reconnect-max`` seconds) and replays
its registrations. Prints ``{"event": "ready"}`` once every worker is connected, then runs
until stdin closes or the process is killed.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import AsyncExitStack
from typing import Any

import trio

from iii_trio.sdk import III


def fleet(args: argparse.Namespace) -> list[III]:
    workers = []
    for i in range(args.count):
        name = f"{args.prefix}-{i}"
        worker = III(
            args.url,
            worker_name=name,
            reconnect_initial=args.reconnect_initial,
            reconnect_max=args.reconnect_max,
        )

        async def echo(data: Any) -> Any:
            return data

        async def sleepy(data: Any) -> Any:
            seconds = data.get("seconds", 30) if isinstance(data, dict) else 30
            await trio.sleep(float(seconds))  # its own process: a call that stays in flight
            return {"slept": seconds}

        worker.register_function(f"{name}::echo", echo)
        worker.register_function(f"{name}::sleepy", sleepy)
        workers.append(worker)
    return workers


async def main(args: argparse.Namespace) -> None:
    async with AsyncExitStack() as stack:
        for worker in fleet(args):
            await stack.enter_async_context(worker.connect())
        print(json.dumps({"event": "ready"}), flush=True)
        stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
        while await stdin.receive_some(1024):
            pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--reconnect-initial", type=float, default=0.05)
    parser.add_argument("--reconnect-max", type=float, default=0.5)
    trio.run(main, parser.parse_args())
