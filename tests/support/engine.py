"""A real engine in the test's own trio run, on an ephemeral loopback port.

tests/conftest.py turns these into the ``start_engine`` and ``engine`` fixtures; tests import
``StartEngine`` (the fixture's type) and ``worker_url`` from here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from iii_trio.runtime.config.loading import EngineConfig
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.kind import ModuleKind

StartEngine = Callable[..., Awaitable[Engine]]
"""``await start_engine(default_timeout=1000, ...)``: keyword overrides of ``EngineConfig``
(``kinds=`` adds module kinds that exist only in the test)."""


def engine_starter(nursery: trio.Nursery) -> StartEngine:
    """Engines on 127.0.0.1 port 0 (``host=`` overrides), run in ``nursery`` (they stop
    when it is cancelled)."""

    async def start(*, kinds: Mapping[str, ModuleKind] | None = None, **overrides: Any) -> Engine:
        config = EngineConfig(**{"port": 0, "host": "127.0.0.1", **overrides})
        engine: Engine = await nursery.start(Engine(config, kinds=kinds).run)
        return engine

    return start


def worker_url(engine: Engine, path: str = "/") -> str:
    """The WebSocket URL a worker connects to (``path`` "/otel" for the telemetry socket)."""
    return f"ws://127.0.0.1:{engine.port}{path}"
