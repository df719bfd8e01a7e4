"""RestApiModule (``modules::api::RestApiModule``, ``iii-http``): ``http`` triggers served
on the API port (:mod:`.module`; one request's flow in :mod:`.exchange`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from iii_trio.runtime.modules.kind import ModuleKind
from iii_trio.runtime.modules.rest_api.config import CHOICE

if TYPE_CHECKING:
    from iii_trio.runtime.config.loading import ModuleEntry
    from iii_trio.runtime.modules.base import EngineModule
    from iii_trio.runtime.modules.context import ModuleContext


def _create(ctx: ModuleContext, entry: ModuleEntry) -> EngineModule:
    from iii_trio.runtime.modules.rest_api import module  # imported only when configured

    return module.create(ctx, entry)


KIND = ModuleKind(CHOICE, _create, trigger_types=("http",))
