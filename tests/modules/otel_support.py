"""Helpers for the OtelModule tests: module entries and in-process calls."""

from __future__ import annotations

from typing import Any

from iii_trio.runtime.config.loading import ModuleEntry
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.observability.config import OtelConfig


def otel_entry(**config: Any) -> ModuleEntry:
    settings = OtelConfig(**{"exporter": "memory", "logs_console_output": False, **config})
    kind, declared = "observability", "modules::observability::OtelModule"
    return ModuleEntry(kind, declared, "modules[2]", settings)


async def call(engine: Engine, function_id: str, data: Any = None) -> Any:
    return await engine.router.call(function_id, data or {}, caller_module="test")


def otel_stats(engine: Engine) -> dict[str, Any]:
    stats: dict[str, Any] = engine.modules["observability"].introspect()
    return stats
