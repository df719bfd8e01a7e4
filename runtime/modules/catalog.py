"""The catalog of module kinds: every kind a config may name, as the modules declare it.

One line per module package; adding a module kind means adding its folder (``config.py``,
``module.py``, an ``__init__`` declaring ``KIND``) and its line here. Nothing else in the
engine names a module: the config parser gets :data:`CHOICES`, the dispatcher gets
:data:`RESERVED_TRIGGER_TYPES` and :data:`MISSING_ACTIONS`, the engine gets :func:`kind`.
"""

from __future__ import annotations

from iii_trio.runtime.builtins import config as builtins
from iii_trio.runtime.builtins.events import TRIGGER_TYPES as BUILT_IN_TRIGGER_TYPES
from iii_trio.runtime.config.loading import EngineConfig, ModuleEntry, default_config
from iii_trio.runtime.config.schema import Choice
from iii_trio.runtime.modules import (
    absent,
    cron,
    observability,
    pubsub,
    queue,
    rest_api,
    state,
    stream,
)
from iii_trio.runtime.modules.kind import ModuleKind

KINDS: tuple[ModuleKind, ...] = (
    rest_api.KIND,
    state.KIND,
    stream.KIND,
    queue.KIND,
    pubsub.KIND,
    cron.KIND,
    observability.KIND,
    ModuleKind(builtins.WORKER, built_in=True),
    ModuleKind(builtins.TELEMETRY, built_in=True),
    ModuleKind(absent.HTTP_FUNCTIONS),
    ModuleKind(absent.EXEC),
    ModuleKind(absent.BRIDGE_CLIENT),
    ModuleKind(absent.KV_SERVER),
)

_BY_NAME = {k.name: k for k in KINDS}

#: What a config's module entries may name, with their settings' schemas.
CHOICES: tuple[Choice, ...] = tuple(k.choice for k in KINDS)

#: Trigger types no worker may provide: the engine's own and every module's, loaded or not.
RESERVED_TRIGGER_TYPES = frozenset(BUILT_IN_TRIGGER_TYPES).union(*(k.trigger_types for k in KINDS))

#: The answer to an invoke action whose module is not loaded, by action type.
MISSING_ACTIONS: dict[str, str] = {
    action: message for k in KINDS for action, message in k.invoke_actions.items()
}

#: ``--use-default-config``: these kinds with default settings, in this order.
DEFAULT_MODULES = ("rest_api", "state", "stream", "queue", "pubsub", "cron")


def kind(name: str) -> ModuleKind | None:
    """The declaration of a kind; None for a name no module declares (a parsed config never
    has one, an :class:`EngineConfig` built in Python may)."""
    return _BY_NAME.get(name)


def is_available(entry: ModuleEntry) -> bool:
    """Whether this build contains the entry's module (the engine's own kinds included)."""
    declared = kind(entry.kind)
    return declared is not None and (declared.built_in or declared.create is not None)


def startup_problem(entry: ModuleEntry) -> str | None:
    """Why this entry cannot start in this build, or None; the CLI exits with code 2 on it."""
    declared = kind(entry.kind)
    return declared.startup_problem(entry) if declared is not None else None


def defaults() -> EngineConfig:
    """The engine config of ``--use-default-config``."""
    return default_config(CHOICES, DEFAULT_MODULES)
