"""Official-SDK workers as real processes, scripted over stdin/stdout JSON lines.

    async with sdk_worker("P25", url, "p25") as worker:
        await worker.request({"op": "register", "id": "p25::echo", "behavior": "echo"})
        reply = await worker.call("n22::echo", {"x": 1})   # {"seq", "ok", "result" | "error"}
        event = await worker.next_event("trigger_registered")

The workers (workers/py_worker.py, workers/node_worker.mjs) document the commands. Each
SDK version lives in its own folder under .deps/, made by ``scripts/install_sdks.sh``; a
missing folder fails the test (it never skips). Every worker's stderr (SDK logs included)
goes to a file whose path, with its last lines, is in every assertion this module raises.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest
import trio

ROOT = Path(__file__).resolve().parents[2]
WORKERS = Path(__file__).resolve().parent / "workers"
DEPS = ROOT / ".deps"
READY_TIMEOUT = 60.0
REPLY_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 10.0
INSTALL_HINT = "run scripts/install_sdks.sh (make sdks, make test do)"


class Sdk(NamedTuple):
    """One official SDK version: ``family, version = SDKS[label]``."""

    family: str  # "py" | "node"
    version: str

    @property
    def folder(self) -> Path:
        return DEPS / f"{self.family}-iii-sdk-{self.version}"

    @property
    def runtime(self) -> str:
        """What the SDK reports as ``runtime`` in its worker metadata."""
        return "python" if self.family == "py" else "node"

    def install_command(self) -> str:
        flag = "--python" if self.family == "py" else "--node"
        return f"scripts/install_sdks.sh {flag} {self.version}"

    def command(self, url: str, name: str, args: Sequence[str] = ()) -> list[str]:
        """The worker's argv; fails the test when the SDK is not installed."""
        if not (self.folder / ".installed").exists():
            pytest.fail(
                f"official SDK {self.family} {self.version} is not installed in {self.folder}: "
                f"{INSTALL_HINT}, or {self.install_command()}",
                pytrace=False,
            )
        common = ["--url", url, "--name", name, *args]
        if self.family == "py":
            return [str(self.folder / "bin" / "python"), str(WORKERS / "py_worker.py"), *common]
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is not on PATH: the npm SDKs need it", pytrace=False)
        worker = str(WORKERS / "node_worker.mjs")
        return [node, worker, "--sdk-dir", str(self.folder), *common]


# label -> SDK, labels as in spec §0. scripts/install_sdks.sh installs the same versions.
SDKS: dict[str, Sdk] = {
    "P4": Sdk("py", "0.4.1"),
    "P11": Sdk("py", "0.11.6"),
    "P25": Sdk("py", "0.25.0"),
    "N3": Sdk("node", "0.3.0"),
    "N11": Sdk("node", "0.11.6"),
    "N22": Sdk("node", "0.22.1"),
}


def command_for(label: str, url: str, name: str, args: Sequence[str] = ()) -> list[str]:
    """How to start one SDK's controlled worker."""
    return SDKS[label].command(url, name, args)


class SdkWorker:
    """A running worker process. Requests may be made from several tasks at once."""

    def __init__(self, label: str, name: str, process: trio.Process, log: Path) -> None:
        self.label = label
        self.name = name
        self.process = process
        self.log = log
        self.stray: list[str] = []  # stdout lines that were neither replies nor events
        self._buffer = b""
        self._seq = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._read_lock = trio.Lock()
        self._eof = False

    # -- failures name the worker and its log ---------------------------------------------

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def failure(self, what: str) -> AssertionError:
        return AssertionError(
            f"{self.label} worker {self.name!r}: {what}\n"
            f"stderr log: {self.log}\n--- last lines ---\n{self.log_tail()}"
        )

    # -- reading: whichever task waits reads, and files what it reads for the others -------

    async def _read_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        with trio.move_on_after(timeout) as scope:
            while not ready():
                if self._eof:
                    code = self.process.poll()
                    raise self.failure(f"exited (code {code}) while waiting for {what}")
                async with self._read_lock:
                    if ready() or self._eof:
                        continue
                    await self._read_chunk()
        if scope.cancelled_caught:
            raise self.failure(f"no {what} within {timeout} s")

    async def _read_chunk(self) -> None:
        assert self.process.stdout is not None
        chunk = await self.process.stdout.receive_some(65536)
        if not chunk:
            self._eof = True
            return
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self._file(line)

    def _file(self, line: bytes) -> None:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            message = None
        if not isinstance(message, dict):
            self.stray.append(line.decode(errors="replace"))
        elif "event" in message:
            self._events.append(message)
        elif isinstance(message.get("seq"), int):
            self._replies[message["seq"]] = message
        else:
            self.stray.append(line.decode(errors="replace"))

    # -- the API tests use ----------------------------------------------------------------

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        await self.next_event("ready", timeout)

    async def request(
        self,
        command: dict[str, Any] | str,
        timeout: float = REPLY_TIMEOUT,
        **fields: Any,
    ) -> dict[str, Any]:
        """Send one command (a dict with "op", or the op name plus fields); its reply."""
        body: dict[str, Any] = {"op": command} if isinstance(command, str) else dict(command)
        body.update(fields)
        self._seq += 1
        seq = body["seq"] = self._seq
        assert self.process.stdin is not None
        try:
            await self.process.stdin.send_all(orjson.dumps(body) + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise self.failure(f"cannot send {body['op']!r}: stdin closed") from exc
        await self._read_until(lambda: seq in self._replies, timeout, f"reply to {body}")
        return self._replies.pop(seq)

    async def next_event(self, kind: str, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        """The oldest unclaimed event line of ``kind`` (trigger_registered, ...)."""
        found: list[dict[str, Any]] = []

        def take() -> bool:  # called repeatedly: takes at most one event
            if found:
                return True
            for event in self._events:
                if event["event"] == kind:
                    self._events.remove(event)
                    found.append(event)
                    return True
            return False

        await self._read_until(take, timeout, f"{kind!r} event")
        return found[0]

    def events(self, kind: str) -> list[dict[str, Any]]:
        """Event lines of ``kind`` read so far and not yet claimed (does not read more)."""
        return [event for event in self._events if event["event"] == kind]

    async def call(self, function_id: str, data: Any, **fields: Any) -> dict[str, Any]:
        return await self.request("call", function_id=function_id, data=data, **fields)

    async def call_void(self, function_id: str, data: Any) -> dict[str, Any]:
        return await self.request("call_void", function_id=function_id, data=data)

    async def register(self, function_id: str, behavior: str = "echo", **spec: Any) -> None:
        reply = await self.request("register", id=function_id, behavior=behavior, **spec)
        if not reply["ok"]:
            raise self.failure(f"could not register {function_id}: {reply['error']}")

    async def stop(self, graceful: bool = True) -> None:
        """Clean SDK shutdown, then the process exit; killed when either takes too long
        (at once when not ``graceful``)."""
        if graceful and self.process.returncode is None and not self._eof:
            try:
                await self.request("shutdown", timeout=SHUTDOWN_TIMEOUT)
            except (AssertionError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        with trio.move_on_after(5 if graceful else 0):
            await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


def _log_path(log_dir: Path, name: str) -> Path:
    log = log_dir / f"{name}.log"
    n = 1
    while log.exists():
        n += 1
        log = log_dir / f"{name}.{n}.log"
    return log


@asynccontextmanager
async def sdk_worker(
    label: str,
    url: str,
    name: str,
    log_dir: Path | None = None,
    *,
    bare: bool = False,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> AsyncIterator[SdkWorker]:
    """Start ``label``'s worker named ``name`` on ``url`` and wait for it to be connected.

    ``bare`` skips its default functions (NAME::echo, ::boom, ::count, ::read_count,
    ::sleepy, and ::fill on Node >= 0.9); ``args`` go to the worker's command line (for
    example ``["--invocation-timeout-ms", "1000"]``), ``env`` into its environment.
    """
    argv = command_for(label, url, name, [*(["--bare"] if bare else []), *args])
    if log_dir is None:
        log_dir = Path(tempfile.mkdtemp(prefix="iii-sdk-worker-"))
    log = _log_path(log_dir, name)
    with log.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            argv,
            stdin=-1,  # subprocess.PIPE
            stdout=-1,
            stderr=log_file,
            env={**os.environ, **(env or {})},
        )
        worker = SdkWorker(label, name, process, log)
        ready = False
        try:
            await worker.wait_ready(ready_timeout)
            ready = True
            yield worker
        finally:
            with trio.CancelScope(shield=True):
                await worker.stop(graceful=ready)
                for stream in (process.stdin, process.stdout):
                    if stream is not None:
                        await stream.aclose()
