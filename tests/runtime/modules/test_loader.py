"""Module loading: config entries become module actors under ``modules``, in file order."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from iii_trio.runtime.builtins.config import TelemetryConfig
from iii_trio.runtime.calls.invocation import CallContext, LocalHandler
from iii_trio.runtime.config.loading import EngineConfig, ModuleEntry
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules import catalog
from iii_trio.runtime.modules.base import EngineModule
from iii_trio.runtime.modules.kind import ModuleKind
from tests.support.engine import StartEngine
from tests.support.fake_module import extra_kinds


class PingModule(EngineModule):
    """A module kind that exists only in this test (passed to the engine as ``kinds``)."""

    def functions(self) -> dict[str, tuple[LocalHandler, str]]:
        return {"ping::ping": (self.ping, "Answer pong")}

    async def ping(self, data: Any, ctx: CallContext) -> Any:
        return {"pong": data}


PING = "ping_for_test"


@pytest.fixture
def ping_kinds() -> dict[str, ModuleKind]:
    return extra_kinds(PING, lambda ctx, entry: PingModule(ctx))


def entry(kind: str) -> ModuleEntry:
    return ModuleEntry(kind, f"modules::{kind}", "modules[0]", TelemetryConfig())


async def test_a_module_registers_its_functions_while_it_runs(
    start_engine: StartEngine,
    ping_kinds: dict[str, ModuleKind],
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = await start_engine(modules=(entry(PING),), kinds=ping_kinds)
    ping_kind = PING
    assert set(engine.modules) == {"worker", ping_kind}
    assert await engine.router.call("ping::ping", 1, caller_module="test") == {"pong": 1}
    names = [row.name for row in engine.system.rows() if row.kind == "module"]
    assert names == ["worker", ping_kind]


async def test_a_stopped_module_takes_its_functions_along(
    ping_kinds: dict[str, ModuleKind], autojump_clock: trio.testing.MockClock
) -> None:
    config = EngineConfig(port=0, host="127.0.0.1", modules=(entry(PING),))
    async with trio.open_nursery() as nursery:
        engine: Engine = await nursery.start(Engine(config, kinds=ping_kinds).run)
        assert "ping::ping" in engine.registry.engine_functions
        nursery.cancel_scope.cancel()
    assert "ping::ping" not in engine.registry.engine_functions
    assert engine.modules == {}


async def test_kinds_not_in_this_build_are_skipped(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    assert not catalog.is_available(entry("no_such_kind"))
    engine = await start_engine(modules=(entry("no_such_kind"), entry("telemetry")))
    assert set(engine.modules) == {"worker"}
