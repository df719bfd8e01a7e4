"""Module loading: config entries become module actors under ``modules``, in file order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio

from iii_trio.runtime import modules
from iii_trio.runtime.calls.invocation import CallContext, LocalHandler
from iii_trio.runtime.config.loading import EngineConfig, ModuleEntry, TelemetryConfig
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.base import EngineModule
from tests.conftest import StartEngine
from tests.support.fake_module import fake_module_kind


class PingModule(EngineModule):
    """A module kind that exists only in this test (installed as a fake submodule)."""

    def functions(self) -> dict[str, tuple[LocalHandler, str]]:
        return {"ping::ping": (self.ping, "Answer pong")}

    async def ping(self, data: Any, ctx: CallContext) -> Any:
        return {"pong": data}


@pytest.fixture
def ping_kind() -> Iterator[str]:
    create = lambda engine, entry: PingModule(engine, entry.kind)  # noqa: E731
    with fake_module_kind("ping_for_test", create) as kind:
        yield kind


def entry(kind: str) -> ModuleEntry:
    return ModuleEntry(kind, f"modules::{kind}", "modules[0]", TelemetryConfig())


async def test_a_module_registers_its_functions_while_it_runs(
    start_engine: StartEngine, ping_kind: str
) -> None:
    engine = await start_engine(modules=(entry(ping_kind),))
    assert modules.is_available(ping_kind)
    assert set(engine.modules) == {"worker", ping_kind}
    assert await engine.router.call("ping::ping", 1, caller_module="test") == {"pong": 1}
    names = [row.name for row in engine.system.rows() if row.kind == "module"]
    assert names == ["worker", ping_kind]


async def test_a_stopped_module_takes_its_functions_along(ping_kind: str) -> None:
    config = EngineConfig(port=0, host="127.0.0.1", modules=(entry(ping_kind),))
    async with trio.open_nursery() as nursery:
        engine: Engine = await nursery.start(Engine(config).run)
        assert "ping::ping" in engine.registry.engine_functions
        nursery.cancel_scope.cancel()
    assert "ping::ping" not in engine.registry.engine_functions
    assert engine.modules == {}


async def test_kinds_not_in_this_build_are_skipped(start_engine: StartEngine) -> None:
    assert not modules.is_available("no_such_kind")
    engine = await start_engine(modules=(entry("no_such_kind"), entry("telemetry")))
    assert set(engine.modules) == {"worker"}
