"""Settings of the StreamModule (spec/modules.md §5.1)."""

from __future__ import annotations

import attrs

from iii_trio.runtime.config.schema import NON_NEGATIVE, PORT, POSITIVE, Choice, choice_of
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
    """StreamModule (§5.1); the keys after ``auth_function`` are this build's (limits of the
    client port, docs/configuration.md)."""

    port: int = attrs.field(default=3112, metadata=PORT)
    host: str = "0.0.0.0"
    auth_function: str | None = None
    #: deadline of each guard call: the auth function and every ``stream:join`` binding
    guard_timeout_ms: int = attrs.field(default=5000, metadata=POSITIVE)
    #: client sockets open at once, and of those from one non-loopback address (0: no cap)
    max_connections: int = attrs.field(default=4096, metadata=POSITIVE)
    max_connections_per_address: int = attrs.field(default=256, metadata=NON_NEGATIVE)
    #: subscriptions one client may hold; a join beyond closes it with 1008
    max_subscriptions_per_client: int = attrs.field(default=1024, metadata=POSITIVE)
    adapter: StreamAdapter = attrs.field(
        factory=StreamKvStoreConfig, metadata=choice_of(STREAM_ADAPTERS, "stream adapter")
    )


CHOICE = Choice("stream", StreamConfig, ("modules::stream::StreamModule",), ("iii-stream",))
