"""``iii-trio actors | invocations | functions | workers | triggers | call | top`` run as real
processes against a real engine with real workers holding slow invocations."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

from iii_trio.runtime.builtins.config import TelemetryConfig
from iii_trio.runtime.config.loading import ModuleEntry
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.base import EngineModule
from iii_trio.runtime.modules.kind import ModuleKind
from iii_trio.sdk import III
from tests.support.engine import StartEngine, worker_url
from tests.support.fake_module import extra_kinds
from tests.support.network import require_non_loopback
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # runs the CLI as a process

CLI = str(Path(sys.executable).with_name("iii-trio"))
DEADLINE_MS = 60_000


async def cli(*args: str, **env_vars: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **env_vars}
    with trio.fail_after(30):
        return await trio.run_process(
            [CLI, *args], capture_stdout=True, capture_stderr=True, check=False, env=env
        )


async def cli_json(engine: Engine, *args: str) -> Any:
    done = await cli(*args, "--engine", worker_url(engine), "--json")
    assert done.returncode == 0, done.stderr.decode()
    return orjson.loads(done.stdout)


async def cli_text(engine: Engine, *args: str) -> str:
    done = await cli(*args, "--engine", worker_url(engine))
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


@pytest.fixture
async def engine(start_engine: StartEngine) -> Engine:
    return await start_engine(default_timeout=DEADLINE_MS)


class Held:
    """A caller worker holding one call to a slow worker until released."""

    def __init__(self, caller: III, target: III) -> None:
        self.caller, self.target = caller, target
        self.release = trio.Event()
        self.entered = trio.Event()
        self.answered = trio.Event()


@pytest.fixture
async def held(engine: Engine, nursery: trio.Nursery) -> AsyncIterator[Held]:
    target = III(worker_url(engine), worker_name="slow")
    caller = III(worker_url(engine), worker_name="caller")
    holder = Held(caller, target)

    @target.function(id="slow::hold")
    async def hold(data: Any) -> Any:
        holder.entered.set()
        await holder.release.wait()
        return data

    async def call() -> None:
        await caller.trigger("slow::hold", {"n": 1})
        holder.answered.set()

    async with target.connect(), caller.connect():
        nursery.start_soon(call)
        with trio.fail_after(10):
            await holder.entered.wait()
        yield holder
        holder.release.set()
        with trio.fail_after(10):
            await holder.answered.wait()


def seconds_in(cell: str) -> float:
    """A duration cell of the table ("523ms", "4.5s") in seconds."""
    text = cell.strip()
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    assert text.endswith("s"), text
    return float(text[:-1])


async def test_invocations_show_each_live_call_until_it_is_done(engine: Engine, held: Held) -> None:
    rows = (await cli_json(engine, "invocations"))["invocations"]
    [row] = [r for r in rows if r["function_id"] == "slow::hold"]
    assert row["caller"] == {"kind": "worker", "id": held.caller.worker_id}
    assert row["target_worker"] == held.target.worker_id
    assert row["state"] == "running"
    assert 0 <= row["age_ms"] < DEADLINE_MS
    assert row["deadline_ms"] - row["started_at"] == DEADLINE_MS

    text = await cli_text(engine, "invocations")
    [line] = [line for line in text.splitlines() if "slow::hold" in line]
    assert row["id"][:8] in line
    assert f"caller ({held.caller.worker_id[:8]})" in line
    assert f"slow ({held.target.worker_id[:8]})" in line
    assert "running" in line
    age, left = (seconds_in(cell) for cell in line.split("│")[5:7])
    assert abs(age + left - DEADLINE_MS / 1000) <= 0.2  # age and time left share one deadline

    filtered = await cli_json(engine, "invocations", "--function", "other::fn")
    assert filtered["invocations"] == []
    by_function = await cli_json(engine, "invocations", "--function", "slow::hold")
    assert [r["id"] for r in by_function["invocations"]] == [row["id"]]
    by_worker = await cli_json(engine, "invocations", "--worker", held.target.worker_id[:8])
    assert [r["id"] for r in by_worker["invocations"]] == [row["id"]]

    held.release.set()
    with trio.fail_after(10):
        await held.answered.wait()
    assert (await cli_json(engine, "invocations"))["invocations"] == []
    assert "invocations (0 live)" in await cli_text(engine, "invocations")


async def test_actors_show_connections_come_and_go(engine: Engine) -> None:
    def connections(rows: list[dict[str, Any]]) -> int:
        return sum(row["kind"] == "connection" for row in rows)

    before = connections((await cli_json(engine, "actors"))["actors"])
    async with III(worker_url(engine), worker_name="visitor").connect():
        rows = (await cli_json(engine, "actors"))["actors"]
        assert connections(rows) == before + 1
        text = await cli_text(engine, "actors")
        assert "listener" in text or "worker-port" in text
        # A connection's row: its address and its mailbox depth/peak/capacity.
        assert re.search(r"worker 127\.0\.0\.1:\d+ ", text), text
        assert "/1024" in text

    async def gone() -> bool:
        return connections((await cli_json(engine, "actors"))["actors"]) == before

    await wait_until(gone, what="the visitor's connection row is gone")


class CrashOnce(EngineModule):
    """A module that fails on its first start (a kind that exists only in this test)."""

    starts = 0

    async def serve(self, task_status: trio.TaskStatus[Any]) -> None:
        CrashOnce.starts += 1
        task_status.started()
        if CrashOnce.starts == 1:
            raise RuntimeError("first start fails")
        await trio.sleep_forever()


CRASH_ONCE = "crash_once_for_test"


@pytest.fixture
def crash_once_kinds() -> dict[str, ModuleKind]:
    CrashOnce.starts = 0
    return extra_kinds(CRASH_ONCE, lambda ctx, entry: CrashOnce(ctx))


async def test_actors_show_a_restarted_modules_restart_count(
    start_engine: StartEngine, crash_once_kinds: dict[str, ModuleKind]
) -> None:
    crash_once_kind = CRASH_ONCE
    entry = ModuleEntry(crash_once_kind, "test", "modules[0]", TelemetryConfig())
    engine = await start_engine(modules=(entry,), kinds=crash_once_kinds)
    await wait_until(lambda: CrashOnce.starts >= 2, what="the module is restarted")
    rows = (await cli_json(engine, "actors"))["actors"]
    [row] = [r for r in rows if r["name"] == crash_once_kind]
    assert row["restarts"] == 1
    [line] = [
        line for line in (await cli_text(engine, "actors")).splitlines() if crash_once_kind in line
    ]
    assert " 1 " in line


async def test_functions_workers_triggers_and_call(engine: Engine, held: Held) -> None:
    functions = await cli_json(engine, "functions")
    assert "slow::hold" in {f["function_id"] for f in functions["functions"]}
    assert "slow::hold" in await cli_text(engine, "functions")
    workers = (await cli_json(engine, "workers"))["workers"]
    assert {"slow", "caller"} <= {w["name"] for w in workers}
    assert held.target.worker_id in await cli_text(engine, "workers")
    assert (await cli_json(engine, "triggers"))["triggers"] == []
    handle = held.target.register_trigger("engine::functions-available", "slow::hold")
    with trio.fail_after(10):
        while not (await held.caller.trigger("engine::triggers::list", {}))["triggers"]:
            pass  # each round trip lets the registration frame arrive
    [binding] = (await cli_json(engine, "triggers"))["triggers"]
    assert (binding["id"], binding["function_id"]) == (handle.id, "slow::hold")
    assert binding["trigger_type"] == "engine::functions-available"
    table = (await cli_text(engine, "triggers")).splitlines()
    [line] = [line for line in table if handle.id[:8] in line]
    assert "engine::functions-available" in line
    assert "slow::hold" in line

    done = await cli("call", "engine::workers::list", "{}", "--engine", worker_url(engine))
    assert done.returncode == 0, done.stderr
    assert {"slow", "caller"} <= {w["name"] for w in orjson.loads(done.stdout)["workers"]}

    missing = await cli("call", "nope::x", "--engine", worker_url(engine))
    assert missing.returncode == 1
    assert b"nope::x failed: function_not_found" in missing.stderr
    bad = await cli("call", "slow::hold", "{not json", "--engine", worker_url(engine))
    assert bad.returncode == 1
    assert b"not valid JSON" in bad.stderr
    slow = await cli("call", "slow::hold", "{}", "--timeout", "0.5", "--engine", worker_url(engine))
    assert slow.returncode == 1
    assert b"slow::hold: no answer within 0.5 s" in slow.stderr


async def test_unreachable_and_refusing_engines_are_one_line(start_engine: StartEngine) -> None:
    done = await cli("workers", "--engine", "ws://127.0.0.1:1")
    assert done.returncode == 1
    assert done.stderr.decode().startswith("iii-trio: cannot reach the engine at ws://127.0.0.1:1")
    guarded = await start_engine(auth_token="s3cret")
    refused = await cli("workers", "--engine", worker_url(guarded))
    assert refused.returncode == 1
    assert b"refused the connection (HTTP 401): pass --token or set III_TOKEN" in refused.stderr
    allowed = await cli("workers", "--engine", worker_url(guarded), "--token", "s3cret")
    assert allowed.returncode == 0, allowed.stderr
    from_env = await cli("workers", "--json", III_URL=worker_url(guarded), III_TOKEN="s3cret")
    assert from_env.returncode == 0, from_env.stderr
    # The CLI's own connection registers nothing, so it is not listed.
    assert orjson.loads(from_env.stdout)["workers"] == []


async def test_a_protected_engine_refusing_the_cli_says_why(start_engine: StartEngine) -> None:
    source = require_non_loopback()  # the CLI connects from it: see tests/support/network.py
    engine = await start_engine(host="0.0.0.0")
    refused = await cli("workers", "--engine", f"ws://{source}:{engine.port}")
    assert refused.returncode == 1
    assert b"(HTTP 403): it is in protected mode" in refused.stderr


async def test_top_renders_and_refreshes_in_a_terminal(engine: Engine, held: Held) -> None:
    controller, terminal = pty.openpty()
    process = await trio.lowlevel.open_process(
        [CLI, "top", "--engine", worker_url(engine), "--interval", "0.2"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "COLUMNS": "160", "LINES": "40", "TERM": "xterm"},
    )
    os.close(terminal)
    screen = b""
    try:
        with trio.fail_after(20):
            while screen.count(b"iii-trio top") < 3 or b"slow::hold" not in screen:
                screen += await trio.to_thread.run_sync(os.read, controller, 65536)
        process.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(controller)
    assert process.returncode == 0
    assert b"\x1b[" in screen  # redrawn in place with cursor movement, not appended
    assert b"mailbox pressure" in screen
