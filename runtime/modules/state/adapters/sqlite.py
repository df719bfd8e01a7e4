"""The KvStore adapter with ``store_method: file_based``: values in the SQLite database at
``file_path`` (a file, or a directory to create ``kv_store_data.db`` in), each write
committed before its call returns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs

from iii_trio.runtime.modules.storage.kv import KvStore, closing
from iii_trio.runtime.modules.storage.kv.sqlite import SqliteStore


@attrs.frozen
class SqliteAdapter:
    file_path: str
    name = "file_based"

    @asynccontextmanager
    async def open(self) -> AsyncIterator[KvStore]:
        async with closing(await SqliteStore.open(self.file_path)) as store:
            yield store
