"""OtelModule config keys that shape output (spec/modules.md §9.1): ``service_version`` and
``service_namespace`` on the resource of exported spans and logs, ``level`` and ``format``
for the engine's own log output."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from tests.runtime.modules.observability.support import call, engine_exporting, otel_entry
from tests.support.engine import StartEngine
from tests.support.waiting import wait_until


def resources(received: list[tuple[str, Any]], path: str, key: str) -> list[dict[str, Any]]:
    return [
        {a["key"]: a["value"]["stringValue"] for a in section["resource"]["attributes"]}
        for got, body in received
        if got == path
        for section in body[key]
    ]


async def test_version_and_namespace_are_on_the_exported_resource(
    start_engine: StartEngine, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    engine, received = await engine_exporting(
        start_engine,
        nursery,
        "",
        service_name="shop",
        service_version="1.2.3",
        service_namespace="prod",
    )
    await call(engine, "engine::log::info", {"message": "versioned"})
    await wait_until(
        lambda: {path for path, _ in received} >= {"/v1/traces", "/v1/logs"},
        what="spans and logs are exported",
    )
    expected = {"service.name": "shop", "service.version": "1.2.3", "service.namespace": "prod"}
    assert resources(received, "/v1/traces", "resourceSpans")[0] == expected
    assert resources(received, "/v1/logs", "resourceLogs")[0] == expected
    [record] = (await call(engine, "engine::logs::list"))["logs"]
    assert record["resource"] == expected


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    """A plain console handler on the root logger, as ``iii-trio serve`` installs one."""
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield output
    finally:
        root.removeHandler(handler)


async def test_level_and_json_format_shape_the_engine_log(
    start_engine: StartEngine, console: io.StringIO, autojump_clock: trio.testing.MockClock
) -> None:
    await start_engine(modules=(otel_entry(level="DEBUG", format="json"),))
    logging.getLogger("iii_trio.probe").debug("checking %s", "json")
    lines = [orjson.loads(line) for line in console.getvalue().splitlines()]
    [probe] = [line for line in lines if line["target"] == "iii_trio.probe"]
    assert (probe["level"], probe["message"]) == ("DEBUG", "checking json")
    assert probe["timestamp"].endswith("+00:00")
    assert logging.getLogger("iii_trio").level == logging.DEBUG


async def test_an_unknown_level_is_reported_not_ignored(
    start_engine: StartEngine,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    await start_engine(modules=(otel_entry(level="loud"),))
    assert any("level 'loud' is not one of" in r.getMessage() for r in caplog.records)
