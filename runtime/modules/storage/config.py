"""Adapter settings shared by several modules (spec/modules.md §1.4).

The KvStore settings are the state module's and, with ``channel_size``, the stream
module's; the Redis and Bridge adapters take the same settings in every module that has
them.
"""

from __future__ import annotations

import attrs

from iii_trio.runtime.config.schema import NON_NEGATIVE, POSITIVE, StoreMethod


@attrs.frozen(kw_only=True)
class KvStoreConfig:
    """KvStore adapter (§4.2). ``file_based`` is SQLite; ``file_path`` may be a directory."""

    store_method: StoreMethod = "in_memory"
    file_path: str = "kv_store_data.db"
    save_interval_ms: int = attrs.field(default=5000, metadata=NON_NEGATIVE)  # no effect


@attrs.frozen(kw_only=True)
class StreamKvStoreConfig(KvStoreConfig):
    """Stream KvStore adapter (§5.1): the state store plus the in-process broadcast size."""

    channel_size: int = attrs.field(default=256, metadata=POSITIVE)


@attrs.frozen(kw_only=True)
class RedisAdapterConfig:
    """Redis adapter of any module (state, stream, queue, pubsub, cron)."""

    redis_url: str = "redis://localhost:6379"


@attrs.frozen(kw_only=True)
class BridgeAdapterConfig:
    """Bridge adapter: forwards every call to another engine."""

    bridge_url: str
