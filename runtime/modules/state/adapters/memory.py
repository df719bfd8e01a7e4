"""The KvStore adapter with ``store_method: in_memory``: values are lost when the engine
stops (said once, as a warning, when the module starts)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs

from iii_trio.runtime.modules.storage.kv import KvStore
from iii_trio.runtime.modules.storage.kv.memory import MemoryStore

log = logging.getLogger("iii_trio.state")


@attrs.frozen
class MemoryAdapter:
    name = "in_memory"

    @asynccontextmanager
    async def open(self) -> AsyncIterator[KvStore]:
        log.warning("state: in_memory store, values are lost when the engine stops")
        yield MemoryStore()
