"""A module kind that exists only in a test, declared as a module package declares its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from iii_trio.runtime.builtins.config import TelemetryConfig
from iii_trio.runtime.config.schema import Choice
from iii_trio.runtime.modules.kind import ModuleKind


def extra_kinds(name: str, create: Callable[[Any, Any], Any]) -> dict[str, ModuleKind]:
    """``Engine(config, kinds=extra_kinds(name, create))`` loads entries of kind ``name``
    with ``create(ctx, entry)``; the kind takes no settings."""
    choice = Choice(name, TelemetryConfig, (f"modules::test::{name}",))
    return {name: ModuleKind(choice, create)}
