"""StreamModule (``modules::stream::StreamModule``, ``iii-stream``): ``stream::*``, the
client WebSocket port and the ``stream``, ``stream:join``, ``stream:leave`` triggers
(:mod:`.module`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from iii_trio.runtime.modules.kind import ModuleKind
from iii_trio.runtime.modules.storage.config import RedisAdapterConfig, StreamKvStoreConfig
from iii_trio.runtime.modules.stream.config import CHOICE

if TYPE_CHECKING:
    from iii_trio.runtime.config.loading import ModuleEntry
    from iii_trio.runtime.modules.base import EngineModule
    from iii_trio.runtime.modules.context import ModuleContext


def _create(ctx: ModuleContext, entry: ModuleEntry) -> EngineModule:
    from iii_trio.runtime.modules.stream import module  # imported only when configured

    return module.create(ctx, entry)


KIND = ModuleKind(
    CHOICE,
    _create,
    trigger_types=("stream", "stream:join", "stream:leave"),
    adapters=(StreamKvStoreConfig, RedisAdapterConfig),
    adapter_hint="modules::stream::adapters::KvStore or modules::stream::adapters::RedisAdapter",
)
