"""The benchmark suite: the engine next to the physical limit and to peer routers, one run.

    make bench                              # installs what it needs, runs everything
    .venv/bin/python bench/run.py [--quick] [--only rpc,memory,startup] [--json PATH]
    .venv/bin/python bench/run.py --only rpc --paths engine-trio --baseline ../old --rounds 3

Sections:
  rpc      caller process -> router -> callee process, payload small / 1 KiB / 64 KiB,
           sequential and 8/32/128 in flight, for: a direct trio-websocket echo (no router:
           the physical limit of this stack), NATS request-reply, Crossbar.io WAMP RPC, the
           engine with the trio SDK on both sides, the engine with the official Python
           iii-sdk 0.25.0 on both sides.
  memory   engine RSS with 0, 2,000 and 5,000 idle connected workers -> cost per connection.
  startup  process start to the worker port answering.
Every reply is validated. Each row has ops/s, p50, p99, CPU seconds of every process
(from /proc) and RSS. Figures go to a table and to JSON (default bench/results/).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from measure import rss_bytes  # noqa: E402

OURS = sys.executable
PEERS = ROOT / ".deps" / "bench-peers" / "bin" / "python"
OFFICIAL = ROOT / ".deps" / "py-iii-sdk-0.25.0" / "bin" / "python"
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_listening(port: int, process: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"nothing listening on {port} after {START_TIMEOUT} s")


# Where the servers' own logs go (they would drown the table); set by main().
SERVER_LOG: Any = subprocess.DEVNULL


@contextlib.contextmanager
def running(argv: list[str], *, ready_line: bool = False) -> Iterator[subprocess.Popen[str]]:
    """A server process for the block; stopped by its PID afterwards. With ``ready_line``,
    waits until it prints ``ready``. Its stderr goes to the servers' log file."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=SERVER_LOG, text=True, cwd=ROOT)
    try:
        if ready_line:
            assert process.stdout is not None
            line = process.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"{argv!r} did not get ready (said {line!r})")
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def engine(
    tmp: Path, *extra: str, python: str = OURS
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    config = tmp / f"engine-{port}.yaml"
    config.write_text(f"port: {port}\n")
    argv = [str(Path(python).with_name("iii-trio")), "serve", "--log-level", "WARNING"]
    argv += list(extra) or ["--config", str(config)]
    with running(argv) as process:
        wait_listening(port, process)
        yield process, f"ws://127.0.0.1:{port}"


def run_caller(argv: list[str], watch: dict[str, int], args: argparse.Namespace) -> list[Any]:
    """Run a caller role over every level; its JSON rows."""
    levels = ["--payloads", args.payloads, "--in-flight", args.in_flight]
    levels += ["--calls", str(args.calls)]
    levels += ["--watch", ",".join(f"{name}={pid}" for name, pid in watch.items())]
    done = subprocess.run([*argv, *levels], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{argv!r} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


# --- rpc paths ---------------------------------------------------------------------------


def rpc_direct(args: argparse.Namespace, tmp: Path) -> list[Any]:
    port = free_port()
    roles = str(BENCH / "roles_trio.py")
    with running([OURS, roles, "echo-server", str(port)]) as server:
        wait_listening(port, server)
        url = f"ws://127.0.0.1:{port}/"
        return run_caller([OURS, roles, "echo-client", url], {"callee": server.pid}, args)


def rpc_engine_trio(args: argparse.Namespace, tmp: Path, tree: Path = ROOT) -> list[Any]:
    """The engine and both trio-SDK workers from the checkout ``tree`` (this one by default;
    ``--baseline`` runs another one's in the same run)."""
    python = OURS if tree == ROOT else str(tree / ".venv" / "bin" / "python")
    roles = str(tree / "bench" / "roles_trio.py")
    with (
        engine(tmp, python=python) as (router, url),
        running([python, roles, "sdk-callee", url], ready_line=True) as callee,
    ):
        watch = {"router": router.pid, "callee": callee.pid}
        return run_caller([python, roles, "sdk-caller", url], watch, args)


def rpc_engine_official(args: argparse.Namespace, tmp: Path) -> list[Any]:
    roles = str(BENCH / "roles_official.py")
    with (
        engine(tmp) as (router, url),
        running([str(OFFICIAL), roles, "callee", url], ready_line=True) as callee,
    ):
        watch = {"router": router.pid, "callee": callee.pid}
        return run_caller([str(OFFICIAL), roles, "caller", url], watch, args)


def rpc_nats(args: argparse.Namespace, tmp: Path) -> list[Any]:
    port = free_port()
    server = shutil.which("nats-server")
    if server is None:
        raise RuntimeError("nats-server is not installed (make services)")
    roles = str(BENCH / "roles_nats.py")
    url = f"nats://127.0.0.1:{port}"
    with running([server, "-a", "127.0.0.1", "-p", str(port)]) as router:
        wait_listening(port, router)
        with running([str(PEERS), roles, "responder", url], ready_line=True) as callee:
            watch = {"router": router.pid, "callee": callee.pid}
            return run_caller([str(PEERS), roles, "requester", url], watch, args)


def crossbar_config(port: int) -> dict[str, Any]:
    allow = {"call": True, "register": True, "publish": True, "subscribe": True}
    permission = {"uri": "", "match": "prefix", "allow": allow, "cache": True}
    realm = {"name": "realm1", "roles": [{"name": "anonymous", "permissions": [permission]}]}
    transport = {
        "type": "websocket",
        "endpoint": {"type": "tcp", "port": port, "interface": "127.0.0.1"},
        "serializers": ["json"],
    }
    return {
        "version": 2,
        "workers": [{"type": "router", "realms": [realm], "transports": [transport]}],
    }


def rpc_crossbar(args: argparse.Namespace, tmp: Path) -> list[Any]:
    port = free_port()
    cbdir = tmp / f"crossbar-{port}"
    cbdir.mkdir()
    (cbdir / "config.json").write_text(json.dumps(crossbar_config(port)))
    crossbar = str(PEERS.with_name("crossbar"))
    roles = str(BENCH / "roles_wamp.py")
    url = f"ws://127.0.0.1:{port}/"
    argv = [crossbar, "start", "--cbdir", str(cbdir), "--loglevel", "warn"]
    with running(argv) as controller:
        wait_listening(port, controller)
        # The router runs in a worker process under the controller: that is the one to watch.
        workers = psutil.Process(controller.pid).children(recursive=True)
        router_pid = workers[0].pid if workers else controller.pid
        with running([str(PEERS), roles, "callee", url], ready_line=True) as callee:
            watch = {"router": router_pid, "callee": callee.pid}
            return run_caller([str(PEERS), roles, "caller", url], watch, args)


# --paths key -> (label, runner)
RPC_PATHS = {
    "direct": ("direct trio-websocket echo", rpc_direct),
    "nats": ("NATS request-reply", rpc_nats),
    "crossbar": ("Crossbar WAMP RPC", rpc_crossbar),
    "engine-trio": ("engine, trio SDK", rpc_engine_trio),
    "engine-official": ("engine, official iii-sdk 0.25.0", rpc_engine_official),
}


def section_rpc(args: argparse.Namespace, tmp: Path) -> list[Any]:
    rows = []
    for round_number in range(args.rounds):
        suffix = f" #{round_number + 1}" if args.rounds > 1 else ""
        for key, (path, bench) in RPC_PATHS.items():
            if key not in args.paths:
                continue
            if key == "engine-trio" and args.baseline is not None:
                # Before and after in one run: the baseline checkout first, then this one.
                label = f"{path} @{args.baseline.name}{suffix}"
                print(f"rpc: {label} ...", file=sys.stderr, flush=True)
                for row in rpc_engine_trio(args, tmp, args.baseline):
                    rows.append({"path": label, **row})
            print(f"rpc: {path}{suffix} ...", file=sys.stderr, flush=True)
            for row in bench(args, tmp):
                rows.append({"path": path + suffix, **row})
    return rows


# --- memory and startup ----------------------------------------------------------------------


def section_memory(args: argparse.Namespace, tmp: Path) -> list[Any]:
    rows = []
    roles = str(BENCH / "roles_trio.py")
    with engine(tmp) as (router, url):
        time.sleep(0.5)
        baseline = rss_bytes(router.pid)
        rows.append({"workers": 0, "engine_rss_mb": baseline / 2**20, "per_worker_kib": None})
        clients: list[subprocess.Popen[str]] = []
        connected = 0
        try:
            for target in args.idle_workers:
                per_process = (target - connected) // args.idle_processes
                for _ in range(args.idle_processes):
                    argv = [OURS, roles, "idle-workers", url, "--calls", str(per_process)]
                    clients.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
                for client in clients[-args.idle_processes :]:
                    assert client.stdout is not None
                    if client.stdout.readline().strip() != "ready":
                        raise RuntimeError("idle workers did not connect")
                connected += per_process * args.idle_processes
                time.sleep(1.0)  # let the engine settle after the burst
                rss = rss_bytes(router.pid)
                per_worker = (rss - baseline) / connected / 1024
                rows.append(
                    {
                        "workers": connected,
                        "engine_rss_mb": rss / 2**20,
                        "per_worker_kib": per_worker,
                    }
                )
        finally:
            for client in clients:
                client.terminate()
            for client in clients:
                client.wait()
    return rows


def section_startup(args: argparse.Namespace, tmp: Path) -> list[Any]:
    """Median time from process start to the worker port accepting, for a config with only
    a port and for the shipped config.yaml (every module, stores under ./data)."""
    shipped = (ROOT / "config.yaml").read_text()
    rows = []
    for label in ("port only", "config.yaml"):
        samples = []
        for _ in range(args.startup_runs):
            workdir = Path(tempfile.mkdtemp(dir=tmp))
            port = free_port()
            text = f"port: {port}\n" if label == "port only" else shipped
            config = workdir / "config.yaml"
            config.write_text(text.replace("port: 49134", f"port: {port}"))
            serve = [str(Path(OURS).with_name("iii-trio")), "serve", "--log-level", "WARNING"]
            started = time.perf_counter()
            argv = [*serve, "--config", str(config)]
            process = subprocess.Popen(argv, cwd=workdir, stderr=SERVER_LOG)
            try:
                wait_listening(port, process)
                samples.append(time.perf_counter() - started)
            finally:
                process.terminate()
                process.wait()
        rows.append(
            {"config": label, "median_ms": statistics.median(samples) * 1e3, "runs": len(samples)}
        )
    return rows


# --- report ---------------------------------------------------------------------------------


def per_call_us(row: dict[str, Any], process: str) -> float | None:
    cpu = row["cpu_s"].get(process)
    return None if cpu is None else cpu / row["calls"] * 1e6


def print_rpc(rows: list[Any]) -> None:
    header = f"{'path':<44}{'payload':>8}{'flight':>7}{'ops/s':>9}{'p50 µs':>9}{'p99 µs':>9}"
    header += f"{'router µs/call':>15}{'caller':>8}{'callee':>8}{'router RSS MB':>14}"
    print(header)
    for row in rows:
        router = per_call_us(row, "router")
        line = f"{row['path']:<44}{row['payload']:>8}{row['in_flight']:>7}{row['ops_per_s']:>9.0f}"
        line += f"{row['p50_us']:>9.0f}{row['p99_us']:>9.0f}"
        line += f"{'-' if router is None else f'{router:.0f}':>15}"
        line += f"{per_call_us(row, 'caller') or 0:>8.0f}{per_call_us(row, 'callee') or 0:>8.0f}"
        rss = row["rss_mb"].get("router")
        line += f"{'-' if rss is None else f'{rss:.0f}':>14}"
        print(line)
    print()
    print_ratios(rows)


def print_ratios(rows: list[Any]) -> None:
    by_key = {(r["path"], r["payload"], r["in_flight"]): r for r in rows}
    ours = "engine, trio SDK"
    peers = ("direct trio-websocket echo", "NATS request-reply", "Crossbar WAMP RPC")
    print("engine (trio SDK) against each peer: p50 ratio (lower is better), ops/s ratio")
    print(f"{'payload':>8}{'flight':>7}" + "".join(f"{p[:22]:>26}" for p in peers))
    for (path, size, flight), row in by_key.items():
        if path != ours:
            continue
        cells = []
        for peer in peers:
            other = by_key.get((peer, size, flight))
            if other is None:
                cells.append(f"{'-':>26}")
                continue
            p50 = row["p50_us"] / other["p50_us"]
            ops = row["ops_per_s"] / other["ops_per_s"]
            cells.append(f"{f'p50 x{p50:.2f}  ops x{ops:.2f}':>26}")
        print(f"{size:>8}{flight:>7}" + "".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few calls: checks the suite runs")
    parser.add_argument("--only", default="rpc,memory,startup")
    parser.add_argument("--paths", default=",".join(RPC_PATHS), help="rpc paths to run")
    parser.add_argument("--payloads", default="small,1KiB,64KiB")
    parser.add_argument("--in-flight", default="1,8,32,128")
    parser.add_argument("--calls", type=int, default=3000, help="per level (64 KiB: a fifth)")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (with its own .venv) whose engine-trio path runs next to this one",
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeat the rpc section")
    args = parser.parse_args()
    args.idle_workers = [2000, 5000]
    args.idle_processes = 4
    args.startup_runs = 5
    if args.quick:
        args.calls, args.idle_workers, args.startup_runs = 200, [200], 1
    args.paths = args.paths.split(",")
    given = vars(args) | {"json": None, "baseline": args.baseline and str(args.baseline)}
    figures: dict[str, Any] = {"machine": machine_facts(), "args": given}
    out = args.json or ROOT / "bench" / "results" / time.strftime("bench-%Y%m%dT%H%M%S.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    global SERVER_LOG
    SERVER_LOG = out.with_suffix(".servers.log").open("w")
    with tempfile.TemporaryDirectory(prefix="iii-bench-") as tmpdir:
        tmp = Path(tmpdir)
        sections = args.only.split(",")
        if "rpc" in sections:
            figures["rpc"] = section_rpc(args, tmp)
            print_rpc(figures["rpc"])
        if "memory" in sections:
            figures["memory"] = section_memory(args, tmp)
            print("\nengine memory with idle connected workers")
            for row in figures["memory"]:
                cost = row["per_worker_kib"]
                per = "" if cost is None else f"  ({cost:.1f} KiB per worker)"
                print(f"  {row['workers']:>6} workers: {row['engine_rss_mb']:.1f} MB{per}")
        if "startup" in sections:
            figures["startup"] = section_startup(args, tmp)
            print("\nstartup: process start to the worker port answering (median)")
            for row in figures["startup"]:
                print(f"  {row['config']:<24} {row['median_ms']:.0f} ms over {row['runs']} runs")
    out.write_text(json.dumps(figures, indent=2))
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    print(f"\nfigures written to {shown}; server logs next to it (.servers.log)")


def machine_facts() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


if __name__ == "__main__":
    main()
