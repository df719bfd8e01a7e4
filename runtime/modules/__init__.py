"""Engine modules (HTTP API, state, streams, queues, pub/sub, cron, observability).

Each module kind from the config (``ModuleEntry.kind``) lives in the submodule of the same
name, ``iii_trio.runtime.modules.<kind>``, which exposes ``create(engine, entry)`` returning
an :class:`~iii_trio.runtime.modules.base.EngineModule`. A kind without such a submodule is
not part of this build: the engine logs that and starts without it.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from iii_trio.runtime.config.loading import ModuleEntry
    from iii_trio.runtime.engine import Engine
    from iii_trio.runtime.modules.base import EngineModule

# Kinds the engine handles itself: listing them in the config changes nothing.
BUILT_IN = frozenset({"worker", "telemetry"})


def is_available(kind: str) -> bool:
    if kind in BUILT_IN:
        return True
    return importlib.util.find_spec(f"{__name__}.{kind}") is not None


def startup_problem(entry: ModuleEntry) -> str | None:
    """Why this entry cannot start in this build, or None; the CLI exits with code 2 on it.

    A kind's submodule that implements only some adapters lists their config classes in
    ``SUPPORTED_ADAPTERS`` and names them for the user in ``ADAPTER_HINT``.
    """
    submodule = importlib.import_module(f"{__name__}.{entry.kind}")
    supported = getattr(submodule, "SUPPORTED_ADAPTERS", None)
    adapter = getattr(entry.config, "adapter", None)
    if supported is None or adapter is None or isinstance(adapter, supported):
        return None
    name = type(adapter).__name__.removesuffix("Config")
    return (
        f"{entry.key_path}.config.adapter: the {name} {entry.kind} adapter is not available "
        f"in this build; use {submodule.ADAPTER_HINT}"
    )


def create(engine: Engine, entry: ModuleEntry) -> EngineModule:
    """The module actor for one config entry (``is_available(entry.kind)`` must hold)."""
    problem = startup_problem(entry)
    if problem is not None:
        raise RuntimeError(problem)
    submodule = importlib.import_module(f"{__name__}.{entry.kind}")
    module: EngineModule = submodule.create(engine, entry)
    return module
