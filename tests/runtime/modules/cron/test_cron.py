"""CronModule (spec/modules.md §8, D9). Schedules run under trio's autojump clock, the
module's wall clock tied to it; the two-engine Redis test runs in real time."""

from __future__ import annotations

import logging
from calendar import timegm
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from iii_trio.runtime.calls.invocation import CallContext, EngineFunction
from iii_trio.runtime.calls.registry import Binding
from iii_trio.runtime.config.loading import ModuleEntry
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.cron.config import CronConfig
from iii_trio.runtime.modules.storage.config import RedisAdapterConfig
from tests.support.engine import StartEngine
from tests.support.redis_server import redis_server

BASE = timegm((2026, 1, 1, 0, 0, 0))  # Thursday 2026-01-01 00:00:00 UTC


def cron_entry(redis_url: str | None = None) -> ModuleEntry:
    config = (
        CronConfig(adapter=RedisAdapterConfig(redis_url=redis_url)) if redis_url else CronConfig()
    )
    return ModuleEntry("cron", "modules::cron::CronModule", "modules[0]", config)


class Recorder:
    """An engine function that records each payload (and can take its time)."""

    def __init__(self, engine: Engine, function_id: str, *, seconds: float = 0.0) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.spans: list[tuple[float, float]] = []
        self.seconds = seconds
        self.third = trio.Event()
        engine.registry.add_engine_function(EngineFunction(function_id, self.handle))

    async def handle(self, data: Any, ctx: CallContext) -> Any:
        started = trio.current_time()
        self.payloads.append(data)
        if len(self.payloads) == 3:
            self.third.set()
        await trio.sleep(self.seconds)
        self.spans.append((started, trio.current_time()))
        return None

    def scheduled(self) -> list[str]:
        return [p["scheduled_time"] for p in self.payloads]


async def cron_engine(start_engine: StartEngine) -> Engine:
    engine = await start_engine(modules=(cron_entry(),))
    module: Any = engine.modules["cron"]
    module.clock = lambda: BASE + trio.current_time()
    return engine


def bind(engine: Engine, function_id: str, config: Any, binding_id: str = "job") -> Binding:
    binding = Binding(None, binding_id, "cron", function_id, config)
    engine.triggers.bind(binding)
    return binding


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("*/5 * * * *", ["2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z", "2026-01-01T00:15:00Z"]),
        ("0 */6 * * *", ["2026-01-01T06:00:00Z", "2026-01-01T12:00:00Z", "2026-01-01T18:00:00Z"]),
        # 6 fields, seconds first; names; Thursday, Friday, then Monday.
        (
            "0 0 9 * * Mon-Fri",
            ["2026-01-01T09:00:00Z", "2026-01-02T09:00:00Z", "2026-01-05T09:00:00Z"],
        ),
        # 7 fields, with the year.
        (
            "30 0 9 * * 1 2027",
            ["2027-01-04T09:00:30Z", "2027-01-11T09:00:30Z", "2027-01-18T09:00:30Z"],
        ),
        # Day-of-week 0 and 7 are both Sunday (Unix convention).
        ("0 0 0 * * 7", ["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z", "2026-01-18T00:00:00Z"]),
        ("0 0 0 * * 0", ["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z", "2026-01-18T00:00:00Z"]),
        ("@hourly", ["2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z", "2026-01-01T03:00:00Z"]),
        ("@daily", ["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z"]),
        ("@weekly", ["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z", "2026-01-18T00:00:00Z"]),
        ("@monthly", ["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"]),
        ("@yearly", ["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z", "2029-01-01T00:00:00Z"]),
    ],
)
async def test_each_expression_form_fires_on_schedule(
    start_engine: StartEngine,
    autojump_clock: trio.testing.MockClock,
    expression: str,
    expected: list[str],
) -> None:
    engine = await cron_engine(start_engine)
    recorder = Recorder(engine, "test::record")
    binding = bind(engine, "test::record", {"expression": expression})
    await recorder.third.wait()  # the autojump clock skips to each tick
    assert recorder.scheduled() == expected
    first = recorder.payloads[0]
    assert first == {
        "trigger": "cron",
        "job_id": binding.id,
        "scheduled_time": expected[0],
        "actual_time": first["actual_time"],
    }
    assert first["actual_time"].startswith(expected[0][:-1])  # fired at its time, ms precision
    assert first["actual_time"].endswith("Z")


async def test_runs_never_overlap_and_missed_ticks_are_skipped(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await cron_engine(start_engine)
    recorder = Recorder(engine, "test::slow", seconds=2.5)  # longer than the 1 s period
    bind(engine, "test::slow", {"expression": "* * * * * *"})
    await trio.sleep(12)
    ends = [end for _, end in recorder.spans]
    starts = [start for start, _ in recorder.spans]
    assert all(start >= end for start, end in zip(starts[1:], ends, strict=False))  # no overlap
    assert recorder.scheduled()[:4] == [
        "2026-01-01T00:00:01Z",
        "2026-01-01T00:00:04Z",  # 00:00:02 and 00:00:03 passed during the first run: skipped
        "2026-01-01T00:00:07Z",
        "2026-01-01T00:00:10Z",
    ]


async def test_a_false_condition_skips_the_run(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await cron_engine(start_engine)
    recorder = Recorder(engine, "test::record")

    async def even_minutes(data: Any, ctx: CallContext) -> bool:
        return data["scheduled_time"][15] in "02468"

    engine.registry.add_engine_function(EngineFunction("test::even", even_minutes))
    bind(engine, "test::record", {"expression": "* * * * *", "condition_function_id": "test::even"})
    await trio.sleep(5 * 60 + 1)
    assert recorder.scheduled() == ["2026-01-01T00:02:00Z", "2026-01-01T00:04:00Z"]


async def test_bindings_sharing_a_trigger_id_fire_once_per_tick(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await cron_engine(start_engine)
    recorder = Recorder(engine, "test::record")
    module: Any = engine.modules["cron"]
    # A replay while the old socket is half-open: two bindings, one trigger id.
    for _ in range(2):
        module.trigger.bind(
            Binding(None, "same-id", "cron", "test::record", {"expression": "@hourly"})
        )
    await trio.sleep(3 * 3600 + 1)
    assert recorder.scheduled() == [
        "2026-01-01T01:00:00Z",
        "2026-01-01T02:00:00Z",
        "2026-01-01T03:00:00Z",
    ]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "Cron expression is required"),
        ({"expression": ""}, "Cron expression is required"),
        ({"interval": "6h"}, "Cron expression is required"),
        ({"expression": 5}, "Cron expression must be a string"),
        ({"expression": "61 * * * *"}, "Invalid cron expression '61 * * * *': "),
        ({"expression": "* * *"}, "Invalid cron expression '* * *': "),
        ("*/5 * * * *", "config must be an object"),
    ],
)
async def test_bad_configs_are_refused(
    start_engine: StartEngine,
    config: Any,
    message: str,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    caplog.set_level(logging.INFO, logger="iii_trio.triggers")
    engine = await start_engine(modules=(cron_entry(),))
    binding = bind(engine, "test::record", config)
    assert binding.key not in engine.registry.bindings
    module: Any = engine.modules["cron"]
    assert module.trigger.jobs == {}
    assert message in caplog.text  # the owner would get trigger_registration_failed with it


@pytest.mark.slow  # starts redis-server
async def test_two_engines_on_one_redis_fire_each_tick_once(
    start_engine: StartEngine, tmp_path: Path
) -> None:
    # Real time: the lock lives in a real redis-server.
    async with redis_server(tmp_path) as url:
        engines = [await start_engine(modules=(cron_entry(url),)) for _ in range(2)]
        recorders = [Recorder(engine, "test::record") for engine in engines]
        for engine in engines:
            bind(engine, "test::record", {"expression": "* * * * * *"}, binding_id="shared")
        await trio.sleep(3.5)  # real time: the engines share the tick lock in redis-server
        for engine in engines:
            engine.triggers.unbind(engine.registry.bindings[("", "shared")])
    fired = [tick for recorder in recorders for tick in recorder.scheduled()]
    assert len(fired) >= 3
    assert len(fired) == len(set(fired))  # every tick fired by exactly one engine
