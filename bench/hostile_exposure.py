"""Hostile peers against the exposure limits (issue 16 items 6, 7, 10), with figures.

    .venv/bin/python bench/hostile_exposure.py [--only idle-stream,channels,...]

Each attack runs against a fresh ``iii-trio serve`` process (the shipped defaults unless the
attack says otherwise) while a good trio-SDK caller keeps calling a trio-SDK target through
the engine. Printed per attack: what the attacker got, the engine's RSS and CPU seconds
during the attack (from /proc), and the good caller's call latency during it (p50 / max).
The figures of docs/reliability.md "Hostile input" come from here. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from iii_trio.runtime.wire.handshake import HandshakeRejected, connect, upgrade  # noqa: E402
from iii_trio.runtime.wire.websocket import ClientWebSocket, ConnectionClosed  # noqa: E402
from iii_trio.sdk import III  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Engine:
    def __init__(self, process: trio.Process, port: int, http: int, stream: int) -> None:
        self.process, self.port, self.http, self.stream = process, port, http, stream

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))


@asynccontextmanager
async def served(extra: str = "", descriptor_limit: int | None = None) -> AsyncIterator[Engine]:
    port, http, stream = free_port(), free_port(), free_port()
    directory = Path(tempfile.mkdtemp(prefix="hostile-"))
    config = directory / "config.yaml"
    config.write_text(
        f"port: {port}\n{extra}modules:\n"
        f"  - {{class: modules::api::RestApiModule, config: {{port: {http}}}}}\n"
        f"  - {{class: modules::stream::StreamModule, config: {{port: {stream}}}}}\n"
    )

    def limit() -> None:
        if descriptor_limit is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_NOFILE, (descriptor_limit, descriptor_limit))

    log = (directory / "engine.log").open("w")
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "iii_trio.runtime", "serve", "--config", str(config)],
        stdout=log,
        stderr=log,
        preexec_fn=limit,
        cwd=directory,
    )
    try:
        for _ in range(200):
            if "descriptors: limit" in (directory / "engine.log").read_text():
                break
            await trio.sleep(0.05)
        yield Engine(process, port, http, stream)
    finally:
        process.kill()
        await process.wait()
        log.close()


class GoodPair:
    """A target and a caller; records the caller's latency while it runs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.latencies: list[float] = []
        self.failures = 0

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        url = f"ws://127.0.0.1:{self.engine.port}"
        target = III(url, worker_name="good-target")

        @target.function(id="good::echo")
        async def echo(data: Any) -> Any:
            return data

        async with target.connect(), III(url, worker_name="good-caller").connect() as caller:
            await caller.trigger("good::echo", {"n": 0})
            task_status.started()
            n = 0
            while True:
                n += 1
                began = time.perf_counter()
                try:
                    await caller.trigger("good::echo", {"n": n}, timeout=10)
                except Exception:
                    self.failures += 1
                self.latencies.append(time.perf_counter() - began)
                await trio.sleep(0.01)

    def during(self) -> tuple[list[float], int]:
        mark, failures = len(self.latencies), self.failures
        return self.latencies[mark:], failures

    def summary(self, since: int, failures_before: int) -> str:
        seen = self.latencies[since:]
        if not seen:
            return "no good calls measured"
        return (
            f"good caller: {len(seen)} calls, p50 {statistics.median(seen) * 1000:.1f} ms, "
            f"max {max(seen) * 1000:.1f} ms, {self.failures - failures_before} failed"
        )


Attack = Callable[[Engine], Awaitable[str]]


async def idle_stream_clients(engine: Engine) -> str:
    """5,000 idle stream clients against the stream port's cap (4,096); then a new worker
    and an HTTP request."""
    admitted, refused = [], 0
    async with AsyncExitStack() as stack:
        for _ in range(5000):
            try:
                ws = await connect(f"ws://127.0.0.1:{engine.stream}/")
            except (HandshakeRejected, ConnectionClosed, OSError):
                refused += 1
                continue
            stack.push_async_callback(ws.aclose)
            admitted.append(ws)
        ok_worker = await _worker_connects(engine)
        async with httpx.AsyncClient() as http:
            status = (await http.get(f"http://127.0.0.1:{engine.http}/nothing")).status_code
        return (
            f"{len(admitted)} admitted, {refused} refused (503); a new worker "
            f"{'connects' if ok_worker else 'is refused'}; HTTP answers {status}; "
            f"engine fds {engine.fds()}"
        )


async def worker_channels(engine: Engine) -> str:
    """11 workers each asking for 1,001 channels (never connected); HTTP meanwhile."""
    url = f"ws://127.0.0.1:{engine.port}"
    codes: dict[str, int] = {}
    async with AsyncExitStack() as stack:
        for n in range(11):
            iii = await stack.enter_async_context(III(url, worker_name=f"hostile-{n}").connect())
            for _ in range(1001):
                try:
                    await iii.trigger("engine::channels::create", {})
                    codes["ok"] = codes.get("ok", 0) + 1
                except Exception as exc:
                    code = getattr(exc, "code", type(exc).__name__)
                    codes[code] = codes.get(code, 0) + 1
        async with httpx.AsyncClient() as http:
            statuses = [
                (await http.get(f"http://127.0.0.1:{engine.http}/nothing")).status_code
                for _ in range(100)
            ]
    answers = sorted(set(statuses))
    return f"channels: {codes}; 100 HTTP requests meanwhile: {answers} (404: no route)"


async def function_flood(engine: Engine) -> str:
    """One worker sends 50,000 registerfunction frames (quota 10,000)."""
    ws = await connect(f"ws://127.0.0.1:{engine.port}/")
    try:
        await ws.receive()
        batch = [
            f'{{"type":"registerfunction","id":"flood::f{n}"}}'.encode() for n in range(50_000)
        ]
        for start in range(0, len(batch), 1000):
            await ws.send_texts(batch[start : start + 1000])
        query = {"type": "invokefunction", "invocation_id": "q", "data": {}}
        await ws.send(json.dumps({**query, "function_id": "engine::functions::list"}))
        while True:
            message = await ws.receive()
            if '"invocation_id":"q"' in str(message):
                count = str(message).count("flood::f")
                break
    finally:
        await ws.aclose()
    return f"50,000 registrations sent, {count} registered"


async def silent_peers(engine: Engine) -> str:
    """100 peers that upgrade and never answer (keepalive shortened to 1 s + 1 s)."""
    began = time.perf_counter()
    closed: list[float] = []

    async def one() -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", engine.port)
        try:
            await upgrade(stream, "x", "/", [])
            while await stream.receive_some(65536):
                pass
            closed.append(time.perf_counter() - began)
        finally:
            await stream.aclose()

    async with trio.open_nursery() as nursery:
        for _ in range(100):
            nursery.start_soon(one)
    return f"100 silent peers, all closed by the keepalive within {max(closed):.2f} s"


async def outsiders(engine: Engine) -> str:
    """1,000 upgrades from a non-loopback local address in protected mode."""
    source = _non_loopback()
    if source is None:
        return "skipped: no non-loopback address here"
    statuses: dict[int, int] = {}
    for _ in range(1000):
        stream = await trio.open_tcp_stream(source, engine.port, local_address=source)
        try:
            try:
                await upgrade(stream, "x", "/", [])
                statuses[101] = statuses.get(101, 0) + 1
            except HandshakeRejected as exc:
                statuses[exc.status] = statuses.get(exc.status, 0) + 1
        finally:
            await stream.aclose()
    return f"answers {statuses}"


async def descriptor_flood(engine: Engine) -> str:
    """Hard descriptor limit 512, 64 reserved: stream clients until 50 are refused."""
    admitted: list[ClientWebSocket] = []
    refused = 0
    peak = 0
    async with AsyncExitStack() as stack:
        while refused < 50:
            try:
                ws = await connect(f"ws://127.0.0.1:{engine.stream}/")
            except (HandshakeRejected, ConnectionClosed, OSError):
                refused += 1
                continue
            stack.push_async_callback(ws.aclose)
            admitted.append(ws)
            peak = max(peak, engine.fds())
    ok_worker = await _worker_connects(engine)
    return (
        f"{len(admitted)} admitted, then refused; engine fds at most {peak} of 512; "
        f"after the flood a new worker {'connects' if ok_worker else 'is refused'}"
    )


async def _worker_connects(engine: Engine) -> bool:
    try:
        ws = await connect(f"ws://127.0.0.1:{engine.port}/")
    except (HandshakeRejected, ConnectionClosed, OSError):
        return False
    try:
        return "workerregistered" in str(await ws.receive())
    finally:
        await ws.aclose()


def _non_loopback() -> str | None:
    sys.path.insert(0, str(ROOT))
    from tests.support.network import non_loopback_ipv4

    return non_loopback_ipv4()


ATTACKS: dict[str, tuple[Attack, str, int | None]] = {
    "idle-stream": (idle_stream_clients, "", None),
    "channels": (worker_channels, "", None),
    "functions": (function_flood, "", None),
    "silent": (silent_peers, "keepalive_interval: 1000\nkeepalive_timeout: 1000\n", None),
    "outsiders": (outsiders, "", None),
    "descriptors": (descriptor_flood, "reserved_descriptors: 64\n", 512),
}


async def main(only: list[str]) -> None:
    for name in only:
        attack, extra, descriptor_limit = ATTACKS[name]
        async with served(extra, descriptor_limit) as engine, trio.open_nursery() as nursery:
            good = GoodPair(engine)
            await nursery.start(good.run)
            await trio.sleep(0.5)
            mark, failures = len(good.latencies), good.failures
            rss_before, cpu_before = engine.rss_mib(), engine.cpu_seconds()
            began = time.perf_counter()
            outcome = await attack(engine)
            took = time.perf_counter() - began
            rss_after, cpu = engine.rss_mib(), engine.cpu_seconds() - cpu_before
            print(f"== {name}: {attack.__doc__.splitlines()[0] if attack.__doc__ else ''}")
            print(f"   {outcome}")
            print(
                f"   {took:.1f} s; engine RSS {rss_before:.0f} -> {rss_after:.0f} MiB, "
                f"CPU {cpu:.2f} s; {good.summary(mark, failures)}"
            )
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(ATTACKS))
    args = parser.parse_args()
    trio.run(main, args.only.split(","))
