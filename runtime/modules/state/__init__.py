"""StateModule (``modules::state::StateModule``, ``iii-state``): ``state::*`` and the
``state`` trigger on a KvStore (memory or SQLite) or Redis (:mod:`.module`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from iii_trio.runtime.modules.kind import ModuleKind
from iii_trio.runtime.modules.state.config import CHOICE
from iii_trio.runtime.modules.storage.config import KvStoreConfig, RedisAdapterConfig

if TYPE_CHECKING:
    from iii_trio.runtime.config.loading import ModuleEntry
    from iii_trio.runtime.modules.base import EngineModule
    from iii_trio.runtime.modules.context import ModuleContext


def _create(ctx: ModuleContext, entry: ModuleEntry) -> EngineModule:
    from iii_trio.runtime.modules.state import module  # imported only when configured

    return module.create(ctx, entry)


KIND = ModuleKind(
    CHOICE,
    _create,
    trigger_types=("state",),
    adapters=(KvStoreConfig, RedisAdapterConfig),
    adapter_hint="modules::state::adapters::KvStore or modules::state::adapters::RedisAdapter",
)
