"""Official-SDK workers as real processes, scripted over stdin/stdout JSON lines."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

ROOT = Path(__file__).resolve().parents[2]
WORKERS = Path(__file__).resolve().parent / "workers"
DEPS = ROOT / ".deps"
READY_TIMEOUT = 60.0
REPLY_TIMEOUT = 30.0


# label -> (family, version); labels as in spec §0.
SDKS = {
    "P4": ("py", "0.4.1"),
    "P11": ("py", "0.11.6"),
    "P25": ("py", "0.25.0"),
    "N3": ("node", "0.3.0"),
    "N11": ("node", "0.11.6"),
    "N22": ("node", "0.22.1"),
}


def command_for(label: str, url: str, prefix: str) -> tuple[list[str], dict[str, str]]:
    """How to start one SDK's controlled worker: (argv, extra environment)."""
    family, version = SDKS[label]
    sdk = DEPS / f"{family}-iii-sdk-{version}"
    if not (sdk / ".installed").exists():
        pytest.fail(
            f"{label} is not installed in {sdk}: run scripts/install_sdks.sh (make test does)"
        )
    if family == "py":
        script = "p4_worker.py" if label == "P4" else "py_worker.py"
        return [str(sdk / "bin" / "python"), str(WORKERS / script), url, prefix], {}
    return ["node", str(WORKERS / "node_worker.mjs"), url, prefix], {"III_SDK_DIR": str(sdk)}


class SdkWorker:
    def __init__(self, label: str, process: trio.Process, log: Path) -> None:
        self.label = label
        self.process = process
        self.log = log
        self._buffer = b""
        self._seq = 0
        self._events: list[dict[str, Any]] = []  # event lines read while awaiting replies

    async def _line(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        with trio.fail_after(timeout):
            while b"\n" not in self._buffer:
                chunk = await self.process.stdout.receive_some(65536)
                if not chunk:
                    raise AssertionError(
                        f"{self.label} worker exited; log:\n{self.log.read_text()}"
                    )
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            message: dict[str, Any] = orjson.loads(line)
        except orjson.JSONDecodeError:
            return {"stray_output": line.decode(errors="replace")}
        return message

    async def wait_ready(self) -> None:
        while (await self._line(READY_TIMEOUT)).get("event") != "ready":
            pass

    async def request(
        self, op: str, timeout: float = REPLY_TIMEOUT, **fields: Any
    ) -> dict[str, Any]:
        self._seq += 1
        seq = self._seq
        assert self.process.stdin is not None
        await self.process.stdin.send_all(orjson.dumps({"op": op, "seq": seq, **fields}) + b"\n")
        while True:
            message = await self._line(timeout)
            if message.get("seq") == seq:
                return message
            if "event" in message:
                self._events.append(message)

    async def next_event(self, kind: str, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        """The next event line of ``kind`` (trigger_registered, ...), kept or awaited."""
        with trio.fail_after(timeout):
            while True:
                for event in self._events:
                    if event["event"] == kind:
                        self._events.remove(event)
                        return event
                message = await self._line(timeout)
                if "event" in message:
                    self._events.append(message)

    async def call(self, function_id: str, data: Any, **fields: Any) -> dict[str, Any]:
        return await self.request("call", function_id=function_id, data=data, **fields)


@asynccontextmanager
async def sdk_worker(label: str, url: str, prefix: str, log_dir: Path) -> AsyncIterator[SdkWorker]:
    argv, env = command_for(label, url, prefix)
    log = log_dir / f"{prefix}.log"
    with log.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            argv,
            stdin=-1,
            stdout=-1,
            stderr=log_file,
            env={**os.environ, **env},
        )
        worker = SdkWorker(label, process, log)
        try:
            await worker.wait_ready()
            yield worker
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(5):
                    try:
                        await worker.request("shutdown", timeout=5)
                    except (AssertionError, trio.TooSlowError, trio.BrokenResourceError):
                        pass
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                for stream in (process.stdin, process.stdout):
                    if stream is not None:
                        await stream.aclose()
