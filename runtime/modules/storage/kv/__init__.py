"""Key-value stores of scopes of keys, shared by the state and stream modules' adapters
(spec/modules.md §4.2, D7): in memory (:mod:`.memory`), SQLite (:mod:`.sqlite`) or Redis
(:mod:`.redis`); ``update`` operations in :mod:`.ops`.

Each store is the single writer of its data, so concurrent calls never interleave inside
one operation: the memory store because trio runs one task at a time and no operation
awaits in the middle, the SQLite store because every operation runs, start to commit, in
one worker thread through a limiter of one, the Redis store because every write is one Lua
script. ``update`` receives a pure function (old value → new value) and applies it inside
that single step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

import trio

from iii_trio.runtime.modules.storage.redis import RedisError

Update = Callable[[Any], Any]  # old value (None when missing) -> new value

# What a store raises when it cannot do its work (the modules answer their error codes).
STORE_ERRORS = (sqlite3.Error, RedisError, OSError)


class KvStore(Protocol):
    async def get(self, scope: str, key: str) -> tuple[bool, Any]: ...

    async def set(self, scope: str, key: str, value: Any) -> Any:
        """Store ``value``; the previous value, or None."""

    async def delete(self, scope: str, key: str) -> tuple[bool, Any]: ...

    async def update(self, scope: str, key: str, change: Update) -> tuple[Any, Any]:
        """Apply ``change`` atomically; (old or None, new)."""

    async def values(self, scope: str) -> list[Any]:
        """The scope's values in insertion order."""

    async def scopes(self) -> list[str]:
        """Scopes holding at least one key, sorted."""

    async def scope_sizes(self) -> dict[str, int]:
        """Number of keys of every non-empty scope."""

    def counts(self) -> dict[str, int] | None:
        """Scopes and keys, if the store can count them without I/O; else None."""

    async def aclose(self) -> None: ...


Store = TypeVar("Store", bound=KvStore)


@asynccontextmanager
async def closing(store: Store) -> AsyncIterator[Store]:
    """``store``, closed when the block ends, even when it ends by cancellation (the modules
    stop that way)."""
    try:
        yield store
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
