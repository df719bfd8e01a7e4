"""Crossbar.io WAMP RPC roles (autobahn on asyncio), a baseline router run by bench/run.py.

Run with the Crossbar venv's interpreter (scripts/install_bench_deps.sh makes it):

    .deps/crossbar/bin/python bench/roles_wamp.py callee URL
    .deps/crossbar/bin/python bench/roles_wamp.py caller URL --payloads P --in-flight F ...

The callee registers ``bench.echo`` in realm ``realm1``; the caller calls it and validates
every reply, as the engine's callers do.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from autobahn.asyncio.wamp import ApplicationRunner, ApplicationSession

sys.path.insert(0, str(Path(__file__).parent))
from measure import caller_arguments, check_echo, payload, run_asyncio_levels

PROCEDURE = "bench.echo"
REALM = "realm1"


def callee_session() -> type[ApplicationSession]:
    class Callee(ApplicationSession):  # type: ignore[misc]
        async def onJoin(self, details: Any) -> None:
            await self.register(lambda data: data, PROCEDURE)
            print("ready", flush=True)

    return Callee


def caller_session(args: argparse.Namespace) -> type[ApplicationSession]:
    class Caller(ApplicationSession):  # type: ignore[misc]
        async def onJoin(self, details: Any) -> None:
            while True:  # until the callee has registered
                try:
                    await self.call(PROCEDURE, {"n": -1})
                    break
                except Exception:
                    await asyncio.sleep(0.05)

            async def call(size: str, n: int) -> None:
                check_echo(size, n, await self.call(PROCEDURE, payload(size, n)))

            await run_asyncio_levels(args, call)
            self.leave()

        def onDisconnect(self) -> None:
            asyncio.get_event_loop().stop()

    return Caller


def main() -> None:
    args = caller_arguments(["callee", "caller"]).parse_args()
    session = callee_session() if args.role == "callee" else caller_session(args)
    ApplicationRunner(args.target, REALM).run(session)


if __name__ == "__main__":
    main()
