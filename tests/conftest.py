"""Shared fixtures: a real engine on an ephemeral loopback port."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest
import trio

from iii_trio.runtime.config.loading import EngineConfig
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.kind import ModuleKind

StartEngine = Callable[..., Awaitable[Engine]]


@pytest.fixture
async def start_engine(nursery: trio.Nursery) -> StartEngine:
    """``await start_engine(default_timeout=1000, ...)`` runs an engine for the test
    (``kinds=`` adds module kinds that exist only in the test)."""

    async def start(*, kinds: Mapping[str, ModuleKind] | None = None, **overrides: Any) -> Engine:
        config = EngineConfig(port=0, host="127.0.0.1", **overrides)
        engine: Engine = await nursery.start(Engine(config, kinds=kinds).run)
        return engine

    return start


@pytest.fixture
async def engine(start_engine: StartEngine) -> Engine:
    return await start_engine()


def worker_url(engine: Engine, path: str = "/") -> str:
    return f"ws://127.0.0.1:{engine.port}{path}"
