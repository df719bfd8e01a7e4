"""HTTP through the RestApiModule: to a trio-SDK worker, next to the same server answering
without the worker hop, with 1 and with 1,000 registered routes; and hypercorn's trio worker
serving a bare ASGI app (roles_hypercorn.py), the server the module's h11 one was chosen over.

    .venv/bin/python bench/http_routes.py [--quick] [--json PATH]

The engine runs as ``iii-trio serve``; the worker and the HTTP client run here. The client
is h11 on keep-alive connections, one per request in flight, so it costs far less than a
general-purpose client. "No worker hop" binds the route to an engine function
(``engine::trigger-types::list``), answered inside the engine. Every response is checked.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import h11
import orjson
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import cpu_seconds, write_results
from modules import engine
from run import ROOT, free_port

from iii_trio.sdk import III

MODULE = (
    "  - class: modules::api::RestApiModule\n"
    "    config: {{port: {port}, host: 127.0.0.1, concurrency_request_limit: 1024}}\n"
)
PAYLOAD = {"user": "u1", "n": 0, "tags": ["a", "b"]}
PATHS = (("/direct", "engine answers itself"), ("/echo", "to a trio-SDK worker"))


class Client:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.http = h11.Connection(h11.CLIENT)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        headers = [("host", "bench"), ("content-type", "application/json")]
        headers.append(("content-length", str(len(body))))
        data = self.http.send(h11.Request(method="POST", target=path, headers=headers)) or b""
        data += self.http.send(h11.Data(data=body)) or b""
        data += self.http.send(h11.EndOfMessage()) or b""
        await self.stream.send_all(data)
        status, chunks = 0, []
        while True:
            event = self.http.next_event()
            if event is h11.NEED_DATA:
                self.http.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self.http.start_next_cycle()
                return status, b"".join(chunks)
            else:
                raise RuntimeError(f"unexpected {event!r}")


async def measure_level(port: int, pid: int, path: str, calls: int, flight: int) -> dict[str, Any]:
    latencies: list[float] = []
    numbers = iter(range(calls))

    async def lane() -> None:
        client = Client(await trio.open_tcp_stream("127.0.0.1", port))
        try:
            for n in numbers:
                body = orjson.dumps({**PAYLOAD, "n": n})
                started = time.perf_counter()
                status, answer = await client.post(path, body)
                latencies.append(time.perf_counter() - started)
                if status != 200 or (path == "/echo" and orjson.loads(answer)["n"] != n):
                    raise AssertionError(f"call {n}: {status} {answer[:200]!r}")
        finally:
            await client.stream.aclose()

    cpu0, start = cpu_seconds(pid), time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(flight):
            nursery.start_soon(lane)
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "in_flight": flight,
        "requests": calls,
        "req_per_s": calls / elapsed,
        "p50_us": latencies[len(latencies) // 2] * 1e6,
        "p99_us": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e6,
        "engine_cpu_us_per_request": (cpu_seconds(pid) - cpu0) / calls * 1e6,
    }


async def routes_registered(worker: III, count: int, seconds: float = 30.0) -> None:
    """Until the engine lists ``count`` http bindings (the measured paths' and the extra
    routes), polling engine::triggers::list; fails after ``seconds``."""
    with trio.fail_after(seconds):
        while True:
            rows = await worker.list_triggers(include_internal=True)  # /direct's is engine::
            if sum(row["trigger_type"] == "http" for row in rows) >= count:
                return
            await trio.sleep(0.05)


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="iii-bench-http-") as tmpdir:
        port = free_port()
        async with engine(Path(tmpdir), MODULE.format(port=port)) as (url, pid):
            worker = III(url, worker_name="http-bench")

            @worker.function(id="bench::echo")
            async def echo(request: dict[str, Any]) -> dict[str, Any]:
                return {"body": request["body"]}

            worker.register_trigger(
                "http", "bench::echo", {"api_path": "echo", "http_method": "POST"}
            )
            worker.register_trigger(
                "http", "engine::trigger-types::list", {"api_path": "direct", "http_method": "POST"}
            )
            async with worker.connect():
                for routes in (1, 1000):
                    if routes == 1000:  # 998 more routes, none of them on the measured paths
                        for n in range(998):
                            worker.register_trigger(
                                "http",
                                "bench::echo",
                                {"api_path": f"r/{n}/:id/x", "http_method": "POST"},
                            )
                    await routes_registered(worker, 2 if routes == 1 else 1000)
                    for path, label in (
                        ("/direct", "engine answers itself"),
                        ("/echo", "to a trio-SDK worker"),
                    ):
                        for flight in args.in_flight:
                            calls = args.calls if flight > 1 else args.calls // 2
                            row = await measure_level(port, pid, path, calls, flight)
                            rows.append({"routes": routes, "path": label, **row})
    rows += await hypercorn_rows(args)
    return rows


async def hypercorn_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    from run import running, wait_listening

    port = free_port()
    python = ROOT / ".deps" / "bench-hypercorn" / "bin" / "python"
    argv = [str(python), str(Path(__file__).with_name("roles_hypercorn.py")), str(port)]
    rows = []
    with running(argv) as server:
        wait_listening(port, server)
        for flight in args.in_flight:
            calls = args.calls if flight > 1 else args.calls // 2
            row = await measure_level(port, server.pid, "/direct", calls, flight)
            rows.append({"routes": 1, "path": "hypercorn, bare ASGI app", **row})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.calls = 200 if args.quick else 3000
    args.in_flight = [1, 8] if args.quick else [1, 8, 32, 128]
    rows = trio.run(main_async, args)
    header = f"{'routes':>7}  {'path':<24}{'flight':>7}{'req/s':>8}{'p50 µs':>9}{'p99 µs':>9}"
    print(header + f"{'engine µs/req':>15}")
    for row in rows:
        print(
            f"{row['routes']:>7}  {row['path']:<24}{row['in_flight']:>7}{row['req_per_s']:>8.0f}"
            f"{row['p50_us']:>9.0f}{row['p99_us']:>9.0f}{row['engine_cpu_us_per_request']:>15.0f}"
        )
    write_results(rows, args.json, "http")


if __name__ == "__main__":
    main()
