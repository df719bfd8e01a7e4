"""``iii-trio actors | invocations | functions | workers | triggers | call | top``.

Each command connects to a running engine as a worker (the trio SDK's transport), calls the
engine's introspection functions (``engine::actors::list``, ``engine::invocations::list``,
...; spec D12) and prints a table, or the engine's answer as JSON with ``--json``. The
connection is one-shot: no registration, no reconnect, so an unreachable engine or a refused
token is one clear line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import trio
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from iii_trio.runtime.wire import handshake
from iii_trio.runtime.wire.websocket import ClientWebSocket, ConnectionClosed

DEFAULT_ENGINE = "ws://localhost:49134"
EXIT_FAILED = 1
CONNECT_TIMEOUT = 10.0


class CliError(Exception):
    """One line for stderr; the command exits with code 1."""


class EngineClient:
    """One connection to the engine that calls functions and waits for their results."""

    def __init__(self, ws: ClientWebSocket, url: str) -> None:
        self.ws = ws
        self.url = url

    @classmethod
    async def connect(cls, url: str, token: str | None) -> EngineClient:
        headers = [("Authorization", f"Bearer {token}")] if token else []
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                ws = await handshake.connect(url, headers)
                hello = orjson.loads(await ws.receive())
        except handshake.HandshakeRejected as exc:
            if exc.status == 401:
                raise CliError(
                    f"the engine at {url} refused the connection (HTTP 401): "
                    "pass --token or set III_TOKEN"
                ) from None
            if exc.status == 403:
                raise CliError(
                    f"the engine at {url} refused the connection (HTTP 403): it is in protected "
                    "mode and admits only its own machine; run this there, or give the engine "
                    "an auth_token and pass --token"
                ) from None
            raise CliError(
                f"the engine at {url} refused the connection (HTTP {exc.status})"
            ) from None
        except (OSError, ConnectionClosed, trio.TooSlowError) as exc:
            raise CliError(f"cannot reach the engine at {url}: {exc or 'timed out'}") from None
        except ValueError as exc:  # a bad URL
            raise CliError(str(exc)) from None
        if hello.get("type") != "workerregistered":
            raise CliError(f"{url} is not an iii engine (it said {str(hello)[:80]})")
        return cls(ws, url)

    async def call(self, function_id: str, data: Any = None, *, seconds: float = 30.0) -> Any:
        """The function's result; its error, or no answer within ``seconds`` (a client-side
        timeout, as in the SDKs), is a :class:`CliError`."""
        invocation_id = str(uuid.uuid4())
        frame: dict[str, Any] = {"type": "invokefunction", "invocation_id": invocation_id}
        frame |= {"function_id": function_id, "data": data}
        try:
            await self.ws.send(orjson.dumps(frame).decode())
            with trio.fail_after(seconds):
                while True:
                    reply = orjson.loads(await self.ws.receive())
                    if reply.get("invocation_id") == invocation_id:
                        break
        except ConnectionClosed as exc:
            raise CliError(f"the engine closed the connection: {exc}") from None
        except trio.TooSlowError:
            raise CliError(
                f"{function_id}: no answer within {seconds:g} s (it may still be running)"
            ) from None
        error = reply.get("error")
        if error is not None:
            raise CliError(f"{function_id} failed: {error.get('code')}: {error.get('message')}")
        return reply.get("result")

    async def aclose(self) -> None:
        await self.ws.aclose()


# --- formatting ------------------------------------------------------------------------------


def short(identifier: str | None) -> str:
    """The first 8 characters of a UUID-like id (enough to tell rows apart)."""
    return "-" if not identifier else identifier[:8]


def duration(ms: float) -> str:
    seconds = ms / 1000
    if seconds < 1:
        return f"{ms:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def caller_text(caller: dict[str, Any], names: dict[str, str]) -> str:
    if caller.get("kind") == "worker":
        worker_id = str(caller.get("id"))
        return names.get(worker_id, short(worker_id))
    return f"module:{caller.get('id')}"


def actors_table(rows: list[dict[str, Any]], now_ms: int) -> Table:
    table = Table(title="actors", title_justify="left")
    for column in ("actor", "kind", "state", "uptime", "restarts"):
        table.add_column(column)
    table.add_column("mailbox depth/peak/capacity", justify="right")
    depth: dict[str, int] = {}
    for row in rows:  # depth-first, each parent before its children
        level = depth.get(row["parent"], -1) + 1 if row.get("parent") else 0
        depth[row["id"]] = level
        mailbox = row["mailbox"]
        pressure = (
            f"{mailbox['depth']}/{mailbox['peak']}/{mailbox['capacity']}"
            if mailbox["capacity"]
            else "-"
        )
        table.add_row(
            "  " * level + str(row["name"]),
            row["kind"],
            row["state"],
            duration(now_ms - row["started_at"]),
            str(row["restarts"]),
            pressure,
        )
    return table


def invocations_table(
    rows: list[dict[str, Any]], now_ms: int, names: dict[str, str], title: str = "invocations"
) -> Table:
    table = Table(title=f"{title} ({len(rows)} live)", title_justify="left")
    for column in ("id", "function", "caller", "target", "age", "left", "state"):
        table.add_column(column, justify="right" if column in ("age", "left") else "left")
    for row in sorted(rows, key=lambda r: -r["age_ms"]):
        target = row.get("target_worker")
        table.add_row(
            short(row["id"]),
            row["function_id"],
            caller_text(row["caller"], names),
            names.get(target, short(target)) if target else "engine",
            duration(row["age_ms"]),
            duration(max(0, row["deadline_ms"] - now_ms)),
            row["state"],
        )
    return table


def simple_table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("-" if cell is None else str(cell) for cell in row))
    return table


def worker_names(workers: list[dict[str, Any]]) -> dict[str, str]:
    """worker id -> "name (id8)" for the tables; workers without a name keep the short id."""
    return {
        w["id"]: f"{w['name']} ({short(w['id'])})" if w.get("name") else short(w["id"])
        for w in workers
    }


# --- commands --------------------------------------------------------------------------------


async def cmd_actors(client: EngineClient, args: argparse.Namespace, console: Console) -> None:
    result = await client.call("engine::actors::list", {})
    if args.json:
        return print_json(result)
    console.print(actors_table(result["actors"], result["timestamp"]))


def matches(row: dict[str, Any], args: argparse.Namespace) -> bool:
    if args.function and row["function_id"] != args.function:
        return False
    if args.worker:
        ids = {row.get("target_worker"), row["caller"].get("id")}
        return any(i and (i == args.worker or i.startswith(args.worker)) for i in ids)
    return True


async def cmd_invocations(client: EngineClient, args: argparse.Namespace, console: Console) -> None:
    result = await client.call("engine::invocations::list", {})
    rows = [row for row in result["invocations"] if matches(row, args)]
    if args.json:
        return print_json({"invocations": rows, "timestamp": result["timestamp"]})
    workers = (await client.call("engine::workers::list", {}))["workers"]
    console.print(invocations_table(rows, result["timestamp"], worker_names(workers)))


async def cmd_functions(client: EngineClient, args: argparse.Namespace, console: Console) -> None:
    result = await client.call("engine::functions::list", {"include_internal": args.all})
    if args.json:
        return print_json(result)
    rows = [[f["function_id"], f.get("description")] for f in result["functions"]]
    console.print(simple_table("functions", ["function", "description"], sorted(rows)))


async def cmd_workers(client: EngineClient, args: argparse.Namespace, console: Console) -> None:
    result = await client.call("engine::workers::list", {})
    if args.json:
        return print_json(result)
    columns = ["id", "name", "runtime", "version", "address", "functions", "in flight"]
    rows = [
        [
            w["id"],
            w.get("name"),
            w.get("runtime"),
            w.get("version"),
            w.get("ip_address"),
            w.get("function_count"),
            w.get("active_invocations"),
        ]
        for w in result["workers"]
    ]
    console.print(simple_table("workers", columns, rows))


async def cmd_triggers(client: EngineClient, args: argparse.Namespace, console: Console) -> None:
    result = await client.call("engine::triggers::list", {"include_internal": args.all})
    if args.json:
        return print_json(result)
    rows = [
        [t["id"], t["trigger_type"], t["function_id"], orjson.dumps(t.get("config")).decode()]
        for t in result["triggers"]
    ]
    console.print(simple_table("triggers", ["id", "type", "function", "config"], rows))


async def cmd_modules(client: EngineClient, args: argparse.Namespace, console: Console) -> None:
    result = await client.call("engine::modules::list", {})
    if args.json:
        return print_json(result)
    # One row per counter, so a module with many counters grows down, not off the screen.
    table = Table(title="modules", title_justify="left")
    table.add_column("module")
    table.add_column("counter")
    table.add_column("value", overflow="fold")
    for row in result["modules"]:
        for n, (counter, value) in enumerate(sorted(row["status"].items())):
            text = value if isinstance(value, str) else orjson.dumps(value).decode()
            table.add_row(row["name"] if n == 0 else "", counter, text, end_section=False)
        table.add_section()
    console.print(table)


async def cmd_call(client: EngineClient, args: argparse.Namespace, console: Console) -> None:
    try:
        data = orjson.loads(args.data) if args.data is not None else None
    except orjson.JSONDecodeError as exc:
        raise CliError(f"the input is not valid JSON: {exc}") from None
    result = await client.call(args.function, data, seconds=args.timeout)
    print_json(result)


async def cmd_top(client: EngineClient, args: argparse.Namespace, console: Console) -> None:
    async def frame() -> Group:
        invocations = await client.call("engine::invocations::list", {})
        actors = (await client.call("engine::actors::list", {}))["actors"]
        workers = (await client.call("engine::workers::list", {}))["workers"]
        now = invocations["timestamp"]
        title = f"iii-trio top · {client.url} · {time.strftime('%H:%M:%S')}"
        table = invocations_table(invocations["invocations"], now, worker_names(workers), title)
        pressed = [a for a in actors if a["mailbox"]["capacity"] and a["mailbox"]["peak"]]
        pressed.sort(key=lambda a: -a["mailbox"]["depth"] / a["mailbox"]["capacity"])
        pressure = actors_table(pressed[: args.mailboxes], now)
        pressure.title = "mailbox pressure (fullest first)"
        return Group(table, pressure)

    with Live(await frame(), console=console, auto_refresh=False) as live:
        while True:
            await trio.sleep(args.interval)
            live.update(await frame(), refresh=True)


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


Command = Callable[[EngineClient, argparse.Namespace, Console], Any]
COMMANDS: dict[str, tuple[Command, str]] = {
    "actors": (cmd_actors, "the live actor tree with mailbox pressure"),
    "invocations": (cmd_invocations, "live invocations: function, caller, target, deadline"),
    "functions": (cmd_functions, "registered functions"),
    "workers": (cmd_workers, "connected workers"),
    "triggers": (cmd_triggers, "trigger bindings"),
    "modules": (cmd_modules, "loaded modules: queue depths, DLQ sizes, next cron runs, ..."),
    "call": (cmd_call, "call a function and print its result"),
    "top": (cmd_top, "a live view of invocations in flight and mailbox pressure"),
}


def add_commands(commands: Any) -> None:
    """Register the subcommands on ``iii-trio``'s subparsers."""
    for name, (_, help_text) in COMMANDS.items():
        parser = commands.add_parser(name, help=help_text)
        parser.add_argument(
            "--engine",
            default=os.environ.get("III_URL") or DEFAULT_ENGINE,
            help=f"engine URL (default $III_URL, else {DEFAULT_ENGINE})",
        )
        parser.add_argument(
            "--token", default=os.environ.get("III_TOKEN"), help="bearer token ($III_TOKEN)"
        )
        if name != "top":
            parser.add_argument("--json", action="store_true", help="print the engine's JSON")
        if name in ("functions", "triggers"):
            parser.add_argument("--all", action="store_true", help="include engine::* entries")
        if name == "invocations":
            parser.add_argument("--function", help="only calls of this function")
            parser.add_argument("--worker", help="only calls from or to this worker id")
        if name == "call":
            parser.add_argument("function", help="function id, e.g. engine::workers::list")
            parser.add_argument("data", nargs="?", help="input as JSON (default null)")
            parser.add_argument("--timeout", type=float, default=30.0, help="seconds")
        if name == "top":
            parser.add_argument("--interval", type=float, default=1.0, help="refresh seconds")
            parser.add_argument("--mailboxes", type=int, default=8, help="rows of pressure")


def run(args: argparse.Namespace) -> int:
    command, _ = COMMANDS[args.command]

    async def main() -> None:
        client = await EngineClient.connect(args.engine, args.token)
        try:
            await command(client, args, Console())
        finally:
            await client.aclose()

    try:
        trio.run(main)
    except CliError as exc:
        print(f"iii-trio: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        pass
    return 0
