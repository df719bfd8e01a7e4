"""Measurement shared by every benchmark role, standard library only.

Roles run in different interpreters (ours, the official SDK's, the Crossbar venv), so this
file imports nothing outside the standard library; roles put bench/ on ``sys.path``.

A run is a list of *levels* (payload size x calls in flight). For each level a role runs
warm-up calls, then the measured calls, and prints one JSON row: ops/s, p50, p99, and the
CPU seconds and RSS of every watched process (the role's own process and the PIDs it was
given: the engine, the callee, a router), read from /proc before and after the level.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# Payload sizes: the JSON object sent, and how its echo is checked.
PAYLOAD_SIZES = {"small": 0, "1KiB": 1024, "64KiB": 65536}


def payload(size: str, n: int) -> dict[str, Any]:
    """Call ``n``'s payload; a ``blob`` pads it to the size (small: no blob)."""
    body: dict[str, Any] = {"user": "u1", "n": n, "tags": ["a", "b"]}
    if PAYLOAD_SIZES[size]:
        body["blob"] = "x" * PAYLOAD_SIZES[size]
    return body


def check_echo(size: str, n: int, reply: Any) -> None:
    """Every reply is validated so an error cannot look fast."""
    if not isinstance(reply, dict) or reply.get("n") != n:
        raise AssertionError(f"call {n}: wrong reply {str(reply)[:200]}")
    if PAYLOAD_SIZES[size] and len(reply.get("blob", "")) != PAYLOAD_SIZES[size]:
        raise AssertionError(f"call {n}: blob of {len(reply.get('blob', ''))} bytes")


def _proc(pid: int, name: str) -> str:
    with open(f"/proc/{pid}/{name}") as file:
        return file.read()


def cpu_seconds(pid: int) -> float:
    fields = _proc(pid, "stat").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    return int(_proc(pid, "statm").split()[1]) * PAGE


def parse_watch(text: str) -> dict[str, int]:
    """``engine=123,callee=456`` -> {"engine": 123, "callee": 456}."""
    watched = {"caller": os.getpid()}
    for part in filter(None, text.split(",")):
        name, pid = part.split("=")
        watched[name] = int(pid)
    return watched


class Level:
    """Times one level: latencies of each call, wall time, CPU and RSS of watched PIDs."""

    def __init__(self, watched: dict[str, int]) -> None:
        self.watched = watched
        self.latencies: list[float] = []
        self._cpu0 = {name: cpu_seconds(pid) for name, pid in watched.items()}
        self._start = time.perf_counter()

    def record(self, started: float) -> None:
        self.latencies.append(time.perf_counter() - started)

    def row(self, **labels: Any) -> dict[str, Any]:
        elapsed = time.perf_counter() - self._start
        latencies = sorted(self.latencies)
        calls = len(latencies)
        return {
            **labels,
            "calls": calls,
            "ops_per_s": calls / elapsed,
            "p50_us": latencies[calls // 2] * 1e6,
            "p99_us": latencies[min(calls - 1, int(calls * 0.99))] * 1e6,
            "cpu_s": {n: cpu_seconds(p) - self._cpu0[n] for n, p in self.watched.items()},
            "rss_mb": {n: rss_bytes(p) / 2**20 for n, p in self.watched.items()},
        }


def emit(row: dict[str, Any]) -> None:
    print(json.dumps(row), flush=True)


def levels(payloads: str, in_flight: str) -> list[tuple[str, int]]:
    """``"small,1KiB"`` x ``"1,8"`` -> [("small", 1), ("small", 8), ("1KiB", 1), ...]."""
    return [(p, int(f)) for p in payloads.split(",") for f in in_flight.split(",")]


def calls_for(size: str, base: int) -> int:
    """Fewer calls for big payloads, so every level takes a similar time."""
    return {"small": base, "1KiB": base, "64KiB": max(50, base // 5)}[size]


WARMUP = 100


def caller_arguments(roles: list[str]) -> argparse.ArgumentParser:
    """The command line every role file shares: ``ROLE TARGET [--payloads ...]``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=roles)
    parser.add_argument("target", help="URL, or the port for a server role")
    parser.add_argument(
        "--payloads", default="small", help="comma list of " + ",".join(PAYLOAD_SIZES)
    )
    parser.add_argument("--in-flight", default="1", help="comma list of calls in flight")
    parser.add_argument("--calls", type=int, default=2000, help="measured calls per level")
    parser.add_argument("--watch", default="", help="name=pid,... processes to measure")
    return parser


async def run_asyncio_levels(
    args: argparse.Namespace, call: Callable[[str, int], Awaitable[None]]
) -> None:
    """Every level on asyncio: warm-up calls, then ``in_flight`` tasks sharing the calls."""
    watched = parse_watch(args.watch)
    for size, in_flight in levels(args.payloads, args.in_flight):
        calls = calls_for(size, args.calls)
        for n in range(min(WARMUP, calls)):
            await call(size, n)
        level = Level(watched)
        numbers = iter(range(calls))

        async def lane(level: Level = level, numbers: Any = numbers, size: str = size) -> None:
            for n in numbers:
                started = time.perf_counter()
                await call(size, n)
                level.record(started)

        await asyncio.gather(*(lane() for _ in range(in_flight)))
        emit(level.row(payload=size, in_flight=in_flight))


def write_results(figures: Any, path: Path | None, prefix: str) -> None:
    """The JSON of a run: at ``path`` (--json), else bench/results/<prefix>-<time>.json."""
    out = path or Path(__file__).parent / "results" / time.strftime(f"{prefix}-%Y%m%dT%H%M%S.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    print(f"\nfigures written to {out}")
