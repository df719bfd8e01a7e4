"""A real redis-server on a free loopback port, for tests of the redis adapters.

``make test`` installs the program (scripts/install_services.sh). Each server runs with no
persistence, in its own temporary folder, and is stopped (by its PID) when the block ends.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from tests.support.ports import free_port

START_TIMEOUT = 10.0


@asynccontextmanager
async def redis_server(directory: Path, port: int | None = None) -> AsyncIterator[str]:
    """Yields ``redis://127.0.0.1:PORT`` (a free port unless ``port`` is given: pass the
    old one to restart a server where clients expect it)."""
    program = shutil.which("redis-server")
    if program is None:
        raise RuntimeError("redis-server is not installed: run `make test` (or `make services`)")
    port = port or free_port()
    log = directory / f"redis-{port}.log"
    options = {"port": port, "bind": "127.0.0.1", "save": "", "appendonly": "no"}
    options |= {"dir": directory, "logfile": log}
    arguments = [part for key, value in options.items() for part in (f"--{key}", str(value))]
    process = await trio.lowlevel.open_process([program, *arguments])
    try:
        with trio.fail_after(START_TIMEOUT):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                except OSError:
                    if process.poll() is not None:
                        raise RuntimeError(
                            f"redis-server exited with {process.returncode}: "
                            f"{log.read_text(errors='replace') if log.exists() else ''}"
                        ) from None
                    await trio.sleep(0.02)  # real time: redis-server is starting
                    continue
                await stream.send_all(b"PING\r\n")
                reply = await stream.receive_some(64)
                await stream.aclose()
                if reply.startswith(b"+PONG"):
                    break
        yield f"redis://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.terminate()
            with trio.move_on_after(5):
                await process.wait()
            if process.poll() is None:
                process.kill()
                await process.wait()
