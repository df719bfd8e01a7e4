"""engine::modules::list and ``iii-trio modules``: every module's counters in one place."""

from __future__ import annotations

import os
import sys
from calendar import timegm
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

from iii_trio.runtime.calls.invocation import CallContext, EngineFunction
from iii_trio.runtime.calls.registry import Binding
from iii_trio.runtime.config.loading import ModuleEntry
from iii_trio.runtime.modules.cron.config import CronConfig
from iii_trio.runtime.modules.pubsub.config import PubSubConfig
from iii_trio.runtime.modules.queue.config import BuiltinQueueConfig, QueueConfig
from iii_trio.runtime.modules.state.config import StateConfig
from tests.support.engine import StartEngine, worker_url
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # runs `iii-trio modules` as a process

CLI = str(Path(sys.executable).with_name("iii-trio"))


async def test_every_module_reports_its_counters(start_engine: StartEngine) -> None:
    queue = QueueConfig(adapter=BuiltinQueueConfig(max_attempts=1))
    engine = await start_engine(
        modules=(
            ModuleEntry("state", "modules::state::StateModule", "modules[0]", StateConfig()),
            ModuleEntry("queue", "modules::queue::QueueModule", "modules[1]", queue),
            ModuleEntry("pubsub", "modules::pubsub::PubSubModule", "modules[2]", PubSubConfig()),
            ModuleEntry("cron", "modules::cron::CronModule", "modules[3]", CronConfig()),
        )
    )
    cron: Any = engine.modules["cron"]
    started = trio.current_time()  # trio's clock has an arbitrary origin
    cron.clock = lambda: timegm((2026, 1, 1, 0, 0, 0)) + trio.current_time() - started

    async def fail(data: Any, ctx: CallContext) -> Any:
        raise RuntimeError("always")

    engine.registry.add_engine_function(EngineFunction("t::fail", fail))
    for binding in (
        Binding(None, "q", "queue", "t::fail", {"topic": "jobs"}),
        Binding(None, "s", "subscribe", "t::fail", {"topic": "news"}),
        Binding(None, "c", "cron", "t::fail", {"expression": "@daily"}),
    ):
        engine.triggers.bind(binding)
    call = engine.router.call
    await call("state::set", {"scope": "a", "key": "k", "value": 1}, caller_module="test")
    await call("enqueue", {"topic": "jobs", "data": 1}, caller_module="test")
    await call("enqueue", {"topic": "nobody", "data": 2}, caller_module="test")

    async def dead_lettered() -> Any:
        listed = await call("engine::queue::dlq_messages", {"queue": "jobs"}, caller_module="t")
        return listed["messages"]

    await wait_until(dead_lettered, what="the failing job is dead-lettered")

    done = await trio.run_process(
        [CLI, "modules", "--json", "--engine", worker_url(engine)], capture_stdout=True
    )
    status = {row["name"]: row["status"] for row in orjson.loads(done.stdout)["modules"]}
    assert set(status) == {"worker", "state", "queue", "pubsub", "cron"}
    assert status["worker"]["connections"] == 1  # the CLI itself
    assert status["state"] == {
        "adapter": "in_memory",
        "scopes": 1,
        "keys": 1,
        "bindings": 0,
        "events_waiting": 0,
        "events_dropped": 0,
    }
    assert status["queue"]["dlq"] == {"jobs": 1}
    assert status["queue"]["backlog"] == {"nobody": 1}
    assert status["queue"]["streams"] == {"jobs -> t::fail": {"waiting": 0, "in_flight": 0}}
    assert status["pubsub"]["subscriptions"] == 1
    assert status["cron"]["jobs"] == {"c": "2026-01-02T00:00:00Z"}

    shown = await trio.run_process(
        [CLI, "modules", "--engine", worker_url(engine)],
        capture_stdout=True,
        env={**os.environ, "COLUMNS": "80", "NO_COLOR": "1"},
    )
    rows, module = set(), ""
    for line in shown.stdout.decode().splitlines():
        if "│" in line:  # one row per counter; the module is named on its first row only
            name, counter, value = (cell.strip() for cell in line.split("│")[1:4])
            module = name or module
            rows.add((module, counter, value))
    assert ("queue", "backlog", '{"nobody":1}') in rows
    assert ("queue", "dlq", '{"jobs":1}') in rows
    assert ("state", "keys", "1") in rows
