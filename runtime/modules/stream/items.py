"""Stream items on a key-value store (spec/modules.md §5.1), the state module's kind.

Items live in the store under one scope per (stream, group) and the item id as key: the
KvStore adapter uses scope ``stream:<stream_name>:<group_id>``; the Redis adapter uses a
:class:`~iii_trio.runtime.modules.storage.kv.redis.RedisStore` with key prefix ``stream``
and scope ``<stream_name>:<group_id>``, so the hash is ``stream:<stream_name>:<group_id>``.

Stream and group are told apart at the first ``:`` after the prefix, so a stream name
should not contain ``:`` (group ids may). Scopes outside the prefix (a StateModule sharing
the SQLite file) are not streams.
"""

from __future__ import annotations

from typing import Any

import attrs

from iii_trio.runtime.modules.storage.kv import KvStore, Update


@attrs.frozen
class Counts:
    streams: int = 0
    groups: int = 0
    items: int = 0


class StreamItems:
    def __init__(self, store: KvStore, scope_prefix: str) -> None:
        self.store = store
        self._prefix = scope_prefix

    def _scope(self, stream_name: str, group_id: str) -> str:
        return f"{self._prefix}{stream_name}:{group_id}"

    def _split(self, scope: str) -> tuple[str, str] | None:
        if not scope.startswith(self._prefix):
            return None
        stream_name, colon, group_id = scope[len(self._prefix) :].partition(":")
        return (stream_name, group_id) if colon else None

    async def get(self, stream_name: str, group_id: str, item_id: str) -> Any:
        _, value = await self.store.get(self._scope(stream_name, group_id), item_id)
        return value

    async def set(self, stream_name: str, group_id: str, item_id: str, value: Any) -> Any:
        """The previous value, or None."""
        return await self.store.set(self._scope(stream_name, group_id), item_id, value)

    async def delete(self, stream_name: str, group_id: str, item_id: str) -> tuple[bool, Any]:
        """(whether the item existed, its old value)."""
        return await self.store.delete(self._scope(stream_name, group_id), item_id)

    async def update(
        self, stream_name: str, group_id: str, item_id: str, change: Update
    ) -> tuple[Any, Any]:
        return await self.store.update(self._scope(stream_name, group_id), item_id, change)

    async def values(self, stream_name: str, group_id: str) -> list[Any]:
        return await self.store.values(self._scope(stream_name, group_id))

    async def streams(self) -> dict[str, list[str]]:
        """Every stream with its non-empty groups, both sorted."""
        streams: dict[str, list[str]] = {}
        for scope in await self.store.scopes():  # sorted
            parts = self._split(scope)
            if parts is not None:
                streams.setdefault(parts[0], []).append(parts[1])
        return {name: sorted(groups) for name, groups in sorted(streams.items())}

    async def groups(self, stream_name: str) -> list[str]:
        return (await self.streams()).get(stream_name, [])

    async def counts(self) -> Counts:
        streams: set[str] = set()
        groups = items = 0
        for scope, size in (await self.store.scope_sizes()).items():
            parts = self._split(scope)
            if parts is not None and size:
                streams.add(parts[0])
                groups += 1
                items += size
        return Counts(len(streams), groups, items)
