"""The engine as a user runs it, for the official SDKs: ``iii-trio serve --config CFG`` in its
own process, CFG holding nothing but ``port: <free port>``.

(tests/conftest.py's ``engine`` fixture runs the engine in-process instead, for tests that
look at its internals.)
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from tests.support.ports import free_port

START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0


def serve_command() -> list[str]:
    """``iii-trio`` from the interpreter's own environment (.venv/bin when run by make)."""
    script = Path(sys.executable).with_name("iii-trio")
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-m", "iii_trio.runtime", "serve"]


@dataclass
class ServedEngine:
    process: trio.Process
    port: int
    log: Path

    @property
    def url(self) -> str:
        """The worker socket, as the SDKs are given it."""
        return f"ws://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def describe(self) -> str:
        return f"engine log: {self.log}\n--- engine log ---\n{self.log_text()[-6000:]}"


class PortTaken(Exception):
    """Another process bound the probed port first."""


async def start_served_engine(
    directory: Path, extra_config: str = "", port: int | None = None
) -> ServedEngine:
    """``extra_config``: YAML appended after ``port: <port>`` (modules, ...); ``port``
    defaults to a free one (pass the old one to restart an engine where workers expect it)."""
    port = port or free_port()
    config = directory / f"engine-{port}.yaml"
    config.write_text(f"port: {port}\n{extra_config}")
    log = directory / f"engine-{port}.log"
    with log.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            [*serve_command(), "--config", str(config)],
            stdin=-3,  # subprocess.DEVNULL
            stdout=log_file,
            stderr=log_file,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    served = ServedEngine(process, port, log)
    with trio.move_on_after(START_TIMEOUT):
        # It logs one line per bound port: "worker port listening on ws://0.0.0.0:PORT".
        while f":{port}" not in served.log_text():
            if process.poll() is not None:
                break
            await trio.sleep(0.05)  # real time: the engine process is starting
        else:
            return served
    if process.poll() is None:
        process.kill()
    await process.wait()
    if "already in use" in served.log_text():
        raise PortTaken(port)
    pytest.fail(
        f"iii-trio serve did not report port {port} within {START_TIMEOUT} s "
        f"(exit code {process.returncode})\n{served.describe()}",
        pytrace=False,
    )


async def stop_served_engine(served: ServedEngine) -> None:
    process = served.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(STOP_TIMEOUT):
            await process.wait()
        if process.poll() is None:
            process.kill()
            await process.wait()


@pytest.fixture
async def served_engine(tmp_path: Path) -> AsyncIterator[ServedEngine]:
    """``iii-trio serve`` on a free loopback port; SIGTERM afterwards.

    Fails the test at teardown when the engine logged a traceback: a frame that trips a bug
    in the engine is a finding even when the SDKs did not notice.
    """
    for attempt in range(3):  # a free port can be taken between the probe and the bind
        try:
            served = await start_served_engine(tmp_path)
            break
        except PortTaken:
            if attempt == 2:
                raise
    try:
        yield served
    finally:
        with trio.CancelScope(shield=True):
            await stop_served_engine(served)
    text = served.log_text()
    assert "Traceback" not in text, f"the engine logged a traceback\n{served.describe()}"
