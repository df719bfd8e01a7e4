"""NATS request-reply roles (nats-py on asyncio), a baseline router run by bench/run.py.

    roles_nats.py responder URL
    roles_nats.py requester URL --payloads P --in-flight F --calls N [--watch name=pid,...]

The responder answers ``bench.echo`` with the request's bytes; the requester sends JSON
payloads and validates every reply, as the engine's callers do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import nats

sys.path.insert(0, str(Path(__file__).parent))
from measure import caller_arguments, check_echo, payload, run_asyncio_levels

SUBJECT = "bench.echo"


async def responder(url: str) -> None:
    client = await nats.connect(url)

    async def echo(message: Any) -> None:
        await message.respond(message.data)

    await client.subscribe(SUBJECT, cb=echo)
    await client.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def requester(args: argparse.Namespace) -> None:
    client = await nats.connect(args.target)

    async def call(size: str, n: int) -> None:
        reply = await client.request(SUBJECT, json.dumps(payload(size, n)).encode(), timeout=30)
        check_echo(size, n, json.loads(reply.data))

    await run_asyncio_levels(args, call)
    await client.close()


def main() -> None:
    args = caller_arguments(["responder", "requester"]).parse_args()
    asyncio.run(responder(args.target) if args.role == "responder" else requester(args))


if __name__ == "__main__":
    main()
