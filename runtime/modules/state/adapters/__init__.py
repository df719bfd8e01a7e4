"""Where the StateModule keeps its values: the adapter its config names, as one object the
module talks to (:class:`StateAdapter`), made by :func:`create`.

- :mod:`.memory`: the KvStore adapter with ``store_method: in_memory``;
- :mod:`.sqlite`: the KvStore adapter with ``store_method: file_based`` (SQLite);
- :mod:`.redis`: the RedisAdapter, values shared by every engine on that Redis.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from iii_trio.runtime.modules.storage.config import KvStoreConfig, RedisAdapterConfig
from iii_trio.runtime.modules.storage.kv import KvStore


class StateAdapter(Protocol):
    @property
    def name(self) -> str:
        """What introspection shows as the module's ``adapter``."""
        ...

    def open(self) -> AbstractAsyncContextManager[KvStore]:
        """The store, open while the block lasts (closed even when cancelled)."""
        ...


def create(config: KvStoreConfig | RedisAdapterConfig) -> StateAdapter:
    """The adapter of ``config`` (one this build has: the catalog checked it)."""
    if isinstance(config, RedisAdapterConfig):
        from iii_trio.runtime.modules.state.adapters.redis import RedisAdapter

        return RedisAdapter(config.redis_url)
    if config.store_method == "file_based":
        from iii_trio.runtime.modules.state.adapters.sqlite import SqliteAdapter

        return SqliteAdapter(config.file_path)
    from iii_trio.runtime.modules.state.adapters.memory import MemoryAdapter

    return MemoryAdapter()
