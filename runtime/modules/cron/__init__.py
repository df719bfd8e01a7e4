"""CronModule (``modules::cron::CronModule``, ``iii-cron``): the ``cron`` trigger, one job per
binding, with an in-process or a Redis lock per tick (:mod:`.module`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from iii_trio.runtime.modules.cron.config import CHOICE
from iii_trio.runtime.modules.kind import ModuleKind

if TYPE_CHECKING:
    from iii_trio.runtime.config.loading import ModuleEntry
    from iii_trio.runtime.modules.base import EngineModule
    from iii_trio.runtime.modules.context import ModuleContext


def _create(ctx: ModuleContext, entry: ModuleEntry) -> EngineModule:
    from iii_trio.runtime.modules.cron import module  # imported only when configured

    return module.create(ctx, entry)


KIND = ModuleKind(CHOICE, _create, trigger_types=("cron",))
