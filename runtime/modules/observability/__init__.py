"""OtelModule (``modules::observability::OtelModule``, ``iii-observability``): spans, logs
and metrics of the engine and its workers, ``/metrics``, OTLP export, the ``log`` trigger and
alert rules (:mod:`.module`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from iii_trio.runtime.modules.kind import ModuleKind
from iii_trio.runtime.modules.observability.config import CHOICE

if TYPE_CHECKING:
    from iii_trio.runtime.config.loading import ModuleEntry
    from iii_trio.runtime.modules.base import EngineModule
    from iii_trio.runtime.modules.context import ModuleContext


def _create(ctx: ModuleContext, entry: ModuleEntry) -> EngineModule:
    from iii_trio.runtime.modules.observability import module  # imported only when configured

    return module.create(ctx, entry)


KIND = ModuleKind(CHOICE, _create, trigger_types=("log",))
