"""Settings of the StreamModule (spec/modules.md §5.1)."""

from __future__ import annotations

import attrs

from iii_trio.runtime.config.schema import PORT, Choice, choice_of
from iii_trio.runtime.modules.storage.config import (
    BridgeAdapterConfig,
    RedisAdapterConfig,
    StreamKvStoreConfig,
)

StreamAdapter = StreamKvStoreConfig | RedisAdapterConfig | BridgeAdapterConfig

STREAM_ADAPTERS = (
    Choice("kv", StreamKvStoreConfig, ("modules::stream::adapters::KvStore",), ("kv",)),
    Choice("redis", RedisAdapterConfig, ("modules::stream::adapters::RedisAdapter",), ("redis",)),
    Choice("bridge", BridgeAdapterConfig, ("modules::stream::adapters::Bridge",)),
)


@attrs.frozen(kw_only=True)
class StreamConfig:
    """StreamModule (§5.1)."""

    port: int = attrs.field(default=3112, metadata=PORT)
    host: str = "0.0.0.0"
    auth_function: str | None = None
    adapter: StreamAdapter = attrs.field(
        factory=StreamKvStoreConfig, metadata=choice_of(STREAM_ADAPTERS, "stream adapter")
    )


CHOICE = Choice("stream", StreamConfig, ("modules::stream::StreamModule",), ("iii-stream",))
