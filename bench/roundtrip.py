"""Round trip through the engine next to a direct WebSocket echo, measured in one run.

    .venv/bin/python bench/roundtrip.py [--calls 5000] [--json out.json]

Baseline: a trio-websocket client sends a small JSON message to a trio-websocket echo
server in another process and waits for it to come back. Engine: the same client, as a raw
worker, sends ``invokefunction`` to the engine (its own process), which routes it to a
raw worker in a third process that answers ``invocationresult``. Both sides use the same
library and payload, so the ratio is the cost the engine adds. Every reply is checked so
an error cannot look fast. Prints a table; ``--json`` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import trio
from trio_websocket import open_websocket_url, serve_websocket

PAYLOAD = {"user": "u1", "n": 0, "tags": ["a", "b"]}
WARMUP = 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- roles (each runs in its own process) -------------------------------------------------


async def echo_server(port: int) -> None:
    async def handler(request: Any) -> None:
        ws = await request.accept()
        while True:
            try:
                await ws.send_message(await ws.get_message())
            except Exception:
                return

    await serve_websocket(handler, "127.0.0.1", port, ssl_context=None)


async def echo_client(port: int, calls: int, in_flight: int) -> dict[str, Any]:
    async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:

        async def one(n: int) -> None:
            message = orjson.dumps({**PAYLOAD, "n": n}).decode()
            await ws.send_message(message)
            reply = await ws.get_message()
            assert orjson.loads(reply)["n"] == n, reply

        return await measure(one, calls, in_flight, ordered=True)


async def callee(port: int) -> None:
    async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
        await ws.get_message()  # workerregistered
        await ws.send_message(
            orjson.dumps({"type": "registerfunction", "id": "bench::echo"}).decode()
        )
        while True:
            invoke = orjson.loads(await ws.get_message())
            if invoke.get("type") != "invokefunction":
                continue
            reply = {
                "type": "invocationresult",
                "invocation_id": invoke["invocation_id"],
                "function_id": invoke["function_id"],
                "result": invoke["data"],
            }
            await ws.send_message(orjson.dumps(reply).decode())


async def caller(port: int, calls: int, in_flight: int) -> dict[str, Any]:
    async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
        await ws.get_message()  # workerregistered
        waiting: dict[str, trio.Event] = {}
        results: dict[str, Any] = {}

        async def reader() -> None:
            while True:
                frame = orjson.loads(await ws.get_message())
                if frame.get("type") == "invocationresult":
                    results[frame["invocation_id"]] = frame
                    waiting.pop(frame["invocation_id"]).set()

        async def one(n: int) -> None:
            invocation_id = f"call-{n}"
            done = waiting[invocation_id] = trio.Event()
            frame = {
                "type": "invokefunction",
                "invocation_id": invocation_id,
                "function_id": "bench::echo",
                "data": {**PAYLOAD, "n": n},
            }
            await ws.send_message(orjson.dumps(frame).decode())
            await done.wait()
            result = results.pop(invocation_id)
            assert result.get("result", {}).get("n") == n, result

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            with trio.fail_after(30):
                while True:  # until the callee has registered
                    probe = f"probe-{time.monotonic()}"
                    done = waiting[probe] = trio.Event()
                    frame = {
                        "type": "invokefunction",
                        "invocation_id": probe,
                        "function_id": "bench::echo",
                        "data": {"n": -1},
                    }
                    await ws.send_message(orjson.dumps(frame).decode())
                    await done.wait()
                    if "error" not in results.pop(probe):
                        break
                    await trio.sleep(0.05)
            figures = await measure(one, calls, in_flight, ordered=False)
            nursery.cancel_scope.cancel()
        return figures


async def measure(one: Any, calls: int, in_flight: int, *, ordered: bool) -> dict[str, Any]:
    for n in range(WARMUP):
        await one(n)
    latencies: list[float] = []
    cpu0 = time.process_time()
    start = time.perf_counter()
    if in_flight == 1 or ordered:
        for n in range(calls):
            t0 = time.perf_counter()
            await one(n)
            latencies.append(time.perf_counter() - t0)
    else:
        counter = iter(range(calls))

        async def lane() -> None:
            for n in counter:
                t0 = time.perf_counter()
                await one(n)
                latencies.append(time.perf_counter() - t0)

        async with trio.open_nursery() as nursery:
            for _ in range(in_flight):
                nursery.start_soon(lane)
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "calls": calls,
        "in_flight": in_flight,
        "ops_per_s": calls / elapsed,
        "p50_us": latencies[len(latencies) // 2] * 1e6,
        "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6,
        "mean_us": statistics.fmean(latencies) * 1e6,
        "client_cpu_s": time.process_time() - cpu0,
    }


# --- orchestration -------------------------------------------------------------------------


def spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, *args])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_client(role: str, port: int, calls: int, in_flight: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, role, str(port), str(calls), str(in_flight)],
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, Any] = json.loads(out.stdout)
    return figures


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def bench(calls: int, in_flight: int) -> dict[str, Any]:
    port = free_port()
    server = spawn("echo-server", str(port))
    try:
        wait_listening(port)
        direct = run_client("echo-client", port, calls, 1)
    finally:
        server.kill()
        server.wait()

    port = free_port()
    config = Path(os.environ.get("TMPDIR", "/tmp")) / f"iii-bench-{port}.yaml"
    config.write_text(f"port: {port}\n")
    engine_proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "iii_trio.runtime",
            "serve",
            "--config",
            str(config),
            "--log-level",
            "WARNING",
        ]
    )
    try:
        wait_listening(port)
        worker = spawn("callee", str(port))
        try:
            cpu_before = cpu_seconds(engine_proc.pid)
            engine_seq = run_client("caller", port, calls, 1)
            engine_cpu = cpu_seconds(engine_proc.pid) - cpu_before
            engine_par = run_client("caller", port, calls, in_flight)
        finally:
            worker.kill()
            worker.wait()
    finally:
        engine_proc.send_signal(2)
        engine_proc.wait()
        config.unlink(missing_ok=True)
    return {
        "direct_echo": direct,
        "engine_sequential": engine_seq,
        "engine_in_flight": engine_par,
        "engine_cpu_us_per_call_sequential": engine_cpu / (calls + WARMUP) * 1e6,
        "ratio_p50_engine_over_direct": engine_seq["p50_us"] / direct["p50_us"],
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("echo-server", "echo-client", "callee", "caller"):
        role, port, *rest = sys.argv[1:]
        if role == "echo-server":
            trio.run(echo_server, int(port))
        elif role == "callee":
            trio.run(callee, int(port))
        else:
            run = echo_client if role == "echo-client" else caller
            print(json.dumps(trio.run(run, int(port), int(rest[0]), int(rest[1]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = bench(args.calls, args.in_flight)
    rows = [
        ("direct trio-websocket echo", figures["direct_echo"]),
        ("engine, sequential", figures["engine_sequential"]),
        (f"engine, {args.in_flight} in flight", figures["engine_in_flight"]),
    ]
    print(f"{'path':<34}{'p50 µs':>10}{'p99 µs':>10}{'ops/s':>10}")
    for label, row in rows:
        print(f"{label:<34}{row['p50_us']:>10.0f}{row['p99_us']:>10.0f}{row['ops_per_s']:>10.0f}")
    ratio = figures["ratio_p50_engine_over_direct"]
    cpu = figures["engine_cpu_us_per_call_sequential"]
    print(f"ratio engine/direct (sequential p50): {ratio:.2f}")
    print(f"engine CPU per routed call (sequential): {cpu:.0f} µs")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
