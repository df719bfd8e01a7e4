"""``engine::rollups::list`` and ``aggregate_interval`` (spec/modules.md §9.3): engine
invocations under trio's autojump clock, worker metrics as raw ``MTRC`` frames on /otel."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.calls.invocation import CallContext, EngineFunction
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.observability import rollups
from tests.runtime.modules.observability.support import call, otel_entry, otel_stats
from tests.support.engine import StartEngine, worker_url
from tests.support.waiting import wait_until
from tests.support.ws import open_ws

BASE_S = 1_767_225_600  # 2026-01-01T00:00:00Z, a whole hour


async def ticking_engine(start_engine: StartEngine) -> Engine:
    engine = await start_engine(modules=(otel_entry(),))
    observer: Any = engine.modules["observability"].observer  # type: ignore[attr-defined]
    observer.clock = lambda: int((BASE_S + trio.current_time()) * 1e9)

    async def fail(data: Any, ctx: CallContext) -> None:
        raise InvocationError("boom", "on purpose")

    engine.registry.add_engine_function(EngineFunction("test::fail", fail))
    return engine


def counts(listed: dict[str, Any]) -> list[tuple[int, int]]:
    return [(row["start_time"] // 1000 - BASE_S, row["count"]) for row in listed["rollups"]]


async def test_minutes_roll_up_into_five_minutes_and_hours(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await ticking_engine(start_engine)
    for pause in (0, 0, 60, 240):  # errors at 0 s, 0 s, 60 s and 300 s
        await trio.sleep(pause)
        with pytest.raises(InvocationError):
            await call(engine, "test::fail")
    # Errors only: the rollups::list calls below are invocations too, but successful ones.
    name = {"metric_name": "iii.invocations.error"}
    minutes = await call(engine, "engine::rollups::list", {"level": 0, **name})
    assert counts(minutes) == [(0, 2), (60, 1), (300, 1)]
    assert minutes["interval_seconds"] == 60
    five = await call(engine, "engine::rollups::list", {"level": 1, **name})
    assert counts(five) == [(0, 3), (300, 1)]  # the open 5 minutes include the open minute
    hours = await call(engine, "engine::rollups::list", {"level": 2, **name})
    assert counts(hours) == [(0, 4)]
    [row] = hours["rollups"]
    assert (row["sum"], row["min"], row["max"], row["avg"]) == (4.0, 1.0, 1.0, 1.0)
    assert row["end_time"] - row["start_time"] == 3_600_000
    later = {"start_time": (BASE_S + 61) * 1000, **name}
    assert counts(await call(engine, "engine::rollups::list", later)) == [(60, 1), (300, 1)]
    durations = await call(
        engine, "engine::rollups::list", {"level": 2, "metric_name": "iii.invocation.duration"}
    )
    [duration] = durations["rollups"]
    assert duration["count"] >= 4  # the rollups::list calls are invocations too
    assert duration["min"] >= 0.0
    with pytest.raises(InvocationError) as refused:
        await call(engine, "engine::rollups::list", {"level": 3})
    assert refused.value.code == "deserialization_error"


def mtrc(points: list[tuple[str, float, int]]) -> bytes:
    metrics = [
        {
            "name": name,
            "gauge": {"dataPoints": [{"asDouble": value, "timeUnixNano": str(stamp)}]},
        }
        for name, value, stamp in points
    ]
    body = {"resourceMetrics": [{"resource": {}, "scopeMetrics": [{"metrics": metrics}]}]}
    return b"MTRC" + orjson.dumps(body)


async def test_worker_metrics_are_aggregated_and_bounded(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(otel_entry(),))
    minute = time.time_ns() // 60_000_000_000 * 60_000_000_000 - 120_000_000_000
    names = rollups.MAX_NAMES_PER_BUCKET + 5
    async with open_ws(worker_url(engine, "/otel")) as otel:
        await otel.send_message(
            mtrc(
                [
                    ("q.depth", 1.0, minute),
                    ("q.depth", 3.0, minute + 10_000_000_000),
                    ("q.depth", 5.0, minute + 70_000_000_000),
                ]
            )
        )
        await otel.send_message(mtrc([(f"n{i}", 1.0, minute) for i in range(names)]))
        await wait_until(
            lambda: otel_stats(engine)["telemetry_frames"] >= 2, what="both frames are ingested"
        )
    listed = await call(
        engine, "engine::metrics::list", {"metric_name": "q.depth", "aggregate_interval": 60}
    )
    assert [
        (row["start_time"] * 1_000_000 - minute, row["count"], row["sum"], row["max"])
        for row in listed["aggregated_metrics"]
    ] == [(0, 2, 4.0, 3.0), (60_000_000_000, 1, 5.0, 5.0)]
    assert listed["query"]["aggregate_interval"] == 60
    # Worker points land in the open minute's rollup; names past the cap are counted.
    stored = await call(engine, "engine::rollups::list", {"metric_name": "q.depth"})
    assert [row["count"] for row in stored["rollups"]] == [3]
    assert otel_stats(engine)["rollups"]["dropped"] >= names + 1 - rollups.MAX_NAMES_PER_BUCKET
