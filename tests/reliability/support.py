"""Shared pieces of the reliability suite: engines run as ``iii-trio serve`` processes (so
they can be SIGKILLed and measured), fleets of trio-SDK workers in a few processes, and the
config blocks the tests combine."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psutil
import trio

from tests.conformance.conftest import (
    PortTaken,
    ServedEngine,
    start_served_engine,
    stop_served_engine,
)
from tests.support.ports import free_port

FLEET_SCRIPT = Path(__file__).resolve().parent / "workers" / "trio_fleet.py"
FLEET_READY_TIMEOUT = 60.0


def state_block(path: Path) -> str:
    return f"""  - class: modules::state::StateModule
    config:
      adapter:
        class: modules::state::adapters::KvStore
        config: {{store_method: file_based, file_path: "{path}"}}
"""


def stream_block(path: Path) -> str:
    return f"""  - class: modules::stream::StreamModule
    config:
      port: 0
      host: 127.0.0.1
      adapter:
        class: modules::stream::adapters::KvStore
        config: {{store_method: file_based, file_path: "{path}"}}
"""


def queue_block(path: Path, **settings: object) -> str:
    extra = "".join(f", {key}: {value}" for key, value in settings.items())
    return f"""  - class: modules::queue::QueueModule
    config:
      adapter:
        class: modules::queue::BuiltinQueueAdapter
        config: {{store_method: file_based, file_path: "{path}"{extra}}}
"""


def http_block(port: int, default_timeout: int = 30000) -> str:
    return f"""  - class: modules::api::RestApiModule
    config: {{port: {port}, host: 127.0.0.1, default_timeout: {default_timeout}}}
"""


def pubsub_block() -> str:
    return "  - class: modules::pubsub::PubSubModule\n"


def modules(*blocks: str) -> str:
    return "modules:\n" + "".join(blocks)


async def start_engine_process(
    directory: Path, extra_config: str = "", port: int | None = None
) -> ServedEngine:
    """``iii-trio serve`` on ``port`` (a free one by default), retrying when a free port is
    taken between the probe and the bind."""
    for attempt in range(3):
        try:
            return await start_served_engine(directory, extra_config, port)
        except PortTaken:
            if port is not None or attempt == 2:
                raise
    raise AssertionError("unreachable")


@asynccontextmanager
async def engine_process(
    directory: Path, extra_config: str = "", port: int | None = None
) -> AsyncIterator[ServedEngine]:
    """An engine process for the block; SIGTERM after it. Fails when the engine logged a
    traceback (a fault the clients did not notice is still a finding)."""
    served = await start_engine_process(directory, extra_config, port)
    try:
        yield served
    finally:
        with trio.CancelScope(shield=True):
            await stop_served_engine(served)
    assert "Traceback" not in served.log_text(), f"engine traceback\n{served.describe()}"


def rss_bytes(process: trio.Process) -> int:
    rss: int = psutil.Process(process.pid).memory_info().rss
    return rss


class Fleet:
    """One process of ``count`` trio-SDK workers named ``prefix-0`` .. ``prefix-<count-1>``."""

    def __init__(self, prefix: str, count: int, process: trio.Process, log: Path) -> None:
        self.prefix = prefix
        self.count = count
        self.process = process
        self.log = log

    def names(self) -> list[str]:
        return [f"{self.prefix}-{i}" for i in range(self.count)]

    def describe(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"fleet {self.prefix} log: {self.log}\n{text[-3000:]}"


@asynccontextmanager
async def trio_fleet(
    url: str,
    prefix: str,
    count: int,
    log_dir: Path,
    *,
    reconnect_initial: float = 0.05,
    reconnect_max: float = 0.5,
) -> AsyncIterator[Fleet]:
    log = log_dir / f"fleet-{prefix}.log"
    argv = [
        sys.executable,
        str(FLEET_SCRIPT),
        *("--url", url, "--prefix", prefix, "--count", str(count)),
        *("--reconnect-initial", str(reconnect_initial), "--reconnect-max", str(reconnect_max)),
    ]
    with log.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            argv, stdin=-1, stdout=-1, stderr=log_file, env={**os.environ}
        )
    fleet = Fleet(prefix, count, process, log)
    try:
        assert process.stdout is not None
        seen = b""
        with trio.move_on_after(FLEET_READY_TIMEOUT):
            while b'"ready"' not in seen:
                chunk = await process.stdout.receive_some(4096)
                if not chunk:
                    break
                seen += chunk
        assert b'"ready"' in seen, f"the fleet did not get ready\n{fleet.describe()}"
        yield fleet
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    await stream.aclose()


__all__ = ["ServedEngine", "free_port", "stop_served_engine"]


FIGURES = Path(__file__).resolve().parents[2] / "build" / "reliability.jsonl"


def record(test: str, **figures: object) -> None:
    """Append what a test measured to build/reliability.jsonl (docs/reliability.md quotes
    these figures; nothing asserts on them beyond each test's own bounds)."""
    FIGURES.parent.mkdir(exist_ok=True)
    with FIGURES.open("a") as out:
        out.write(json.dumps({"test": test, "at": time.strftime("%F %T"), **figures}) + "\n")
