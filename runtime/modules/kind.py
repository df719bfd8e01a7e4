"""How a module kind is declared: what the config calls it, and what it reserves.

Each module package declares its ``KIND`` in its ``__init__``; the catalog
(:mod:`iii_trio.runtime.modules.catalog`) collects them. The engine core names no module:
config kinds, the trigger types workers may not provide, and the answer to an invoke action
whose module is not loaded all come from these declarations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from iii_trio.runtime.config.schema import Choice

if TYPE_CHECKING:
    from iii_trio.runtime.config.loading import ModuleEntry
    from iii_trio.runtime.modules.base import EngineModule
    from iii_trio.runtime.modules.context import ModuleContext

#: Makes the module actor for one config entry; called again for every restart.
ModuleFactory = Callable[["ModuleContext", "ModuleEntry"], "EngineModule"]


@attrs.frozen
class ModuleKind:
    #: the canonical kind, its settings' schema and the spellings a config may use
    choice: Choice
    #: None: accepted in a config, not part of this build (logged at startup, skipped)
    create: ModuleFactory | None = None
    #: trigger types only this module provides; a worker may never register them
    trigger_types: tuple[str, ...] = ()
    #: invoke action type -> the error message when this module is not loaded
    invoke_actions: Mapping[str, str] = attrs.field(factory=dict)
    #: the adapter config classes this build implements (None: no adapter choice)
    adapters: tuple[type[Any], ...] | None = None
    #: how to name the implemented adapters in the error for another one
    adapter_hint: str = ""
    #: handled by the engine itself (``worker``, ``telemetry``): listing it changes nothing
    built_in: bool = False

    @property
    def name(self) -> str:
        return self.choice.kind

    def startup_problem(self, entry: ModuleEntry) -> str | None:
        """Why this entry cannot start in this build (an adapter it lacks), or None."""
        adapter = getattr(entry.config, "adapter", None)
        if self.adapters is None or adapter is None or isinstance(adapter, self.adapters):
            return None
        name = type(adapter).__name__.removesuffix("Config")
        return (
            f"{entry.key_path}.config.adapter: the {name} {entry.kind} adapter is not available "
            f"in this build; use {self.adapter_hint}"
        )
