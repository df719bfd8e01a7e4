"""StateModule (``modules::state::StateModule``, ``iii-state``; spec/modules.md §4).

``state::set/get/delete/update/list/list_groups`` on the store of its adapter (in memory,
SQLite or Redis: :mod:`.adapters`), and the ``state`` trigger, fired after the write is
committed. Events wait in a bounded queue; a consumer delivers each event in a task of its
own (bindings of one event one after another), at most :data:`DELIVERIES_IN_FLIGHT` events
at a time.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs
import trio

from iii_trio.runtime.calls import inputs
from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.calls.invocation import CallContext, LocalHandler
from iii_trio.runtime.modules.base import EngineModule
from iii_trio.runtime.modules.state import adapters
from iii_trio.runtime.modules.state.config import StateConfig
from iii_trio.runtime.modules.state.inputs import (
    StateKey,
    StateScope,
    StateTriggerConfig,
    StateUpdate,
    StateWrite,
)
from iii_trio.runtime.modules.storage.config import KvStoreConfig, RedisAdapterConfig
from iii_trio.runtime.modules.storage.kv import STORE_ERRORS, KvStore
from iii_trio.runtime.modules.storage.kv.ops import apply_ops

if TYPE_CHECKING:
    from iii_trio.runtime.calls.registry import Binding, EngineTriggerType
    from iii_trio.runtime.config.loading import ModuleEntry
    from iii_trio.runtime.modules.context import ModuleContext

log = logging.getLogger("iii_trio.state")

# State events waiting for delivery; beyond this a write's event is dropped with a warning.
EVENT_QUEUE_CAPACITY = 1024
# Events being delivered at once (each calls its matching bindings one after another).
DELIVERIES_IN_FLIGHT = 64
# Stores that cannot count their keys for a sync snapshot (SQLite, Redis) are recounted in
# the background, at most this often while writes happen.
COUNTS_REFRESH_SECONDS = 1.0


def create(ctx: ModuleContext, entry: ModuleEntry) -> StateModule:
    assert isinstance(entry.config, StateConfig)
    adapter = entry.config.adapter
    assert isinstance(adapter, KvStoreConfig | RedisAdapterConfig)  # checked by the catalog
    return StateModule(ctx, adapter)


@attrs.frozen(eq=False)  # identity: an event borrows a delivery slot
class StateEvent:
    event_type: str
    scope: str
    key: str
    old_value: Any
    new_value: Any

    def payload(self) -> dict[str, Any]:
        return {
            "type": "state",
            "event_type": self.event_type,
            "scope": self.scope,
            "key": self.key,
            "old_value": self.old_value,
            "new_value": self.new_value,
        }


class StateTrigger:
    """The ``state`` trigger type: config ``{scope?, key?, condition_function_id?}``."""

    id = "state"
    description = "Fires after a state value is created, updated or deleted"

    def __init__(self) -> None:
        self.bindings: list[Binding] = []

    def bind(self, binding: Binding) -> None:
        inputs.structure_config(binding.config, StateTriggerConfig)
        self.bindings.append(binding)

    def unbind(self, binding: Binding) -> None:
        if binding in self.bindings:
            self.bindings.remove(binding)

    def matching(self, event: StateEvent) -> list[Binding]:
        def matches(binding: Binding) -> bool:
            config = binding.config or {}
            return config.get("scope") in (None, event.scope) and config.get("key") in (
                None,
                event.key,
            )

        return [b for b in self.bindings if matches(b)]


class StateModule(EngineModule):
    def __init__(self, ctx: ModuleContext, adapter: KvStoreConfig | RedisAdapterConfig) -> None:
        super().__init__(ctx)
        self.adapter = adapters.create(adapter)
        self.store: KvStore | None = None
        self.trigger = StateTrigger()
        self._events_in, self._events_out = trio.open_memory_channel[StateEvent](
            EVENT_QUEUE_CAPACITY
        )
        self.dropped_events = 0
        self.counted: dict[str, int] = {}  # the last background count (SQLite, Redis)
        self._written = trio.Event()

    def functions(self) -> dict[str, tuple[LocalHandler, str]]:
        return {
            "state::set": (self.set, "Store a value under scope and key"),
            "state::get": (self.get, "Read the value under scope and key"),
            "state::delete": (self.delete, "Delete the value under scope and key"),
            "state::update": (self.update, "Apply update operations atomically"),
            "state::list": (self.list_values, "Every value of a scope, in insertion order"),
            "state::list_groups": (self.list_groups, "Scopes holding at least one key"),
        }

    def trigger_types(self) -> list[EngineTriggerType]:
        return [self.trigger]

    def introspect(self) -> dict[str, Any]:
        counts = self.store.counts() if self.store is not None else None
        return {
            "adapter": self.adapter.name,
            **(self.counted if counts is None else counts),
            "bindings": len(self.trigger.bindings),
            "events_waiting": self._events_out.statistics().current_buffer_used,
            "events_dropped": self.dropped_events,
        }

    async def serve(self, task_status: trio.TaskStatus[Any]) -> None:
        async with self.adapter.open() as store:
            self.store = store
            async with trio.open_nursery() as nursery:
                if store.counts() is None:
                    nursery.start_soon(self._recount, store)
                task_status.started()
                await self._deliver_events()

    async def _recount(self, store: KvStore) -> None:
        while True:
            try:
                sizes = await store.scope_sizes()
                self.counted = {"scopes": len(sizes), "keys": sum(sizes.values())}
            except STORE_ERRORS as exc:
                log.debug("state: counting keys failed: %s", exc)
            await self._written.wait()
            self._written = trio.Event()
            await trio.sleep(COUNTS_REFRESH_SECONDS)

    # --- functions ---------------------------------------------------------------------------

    def _open_store(self, operation: str) -> KvStore:
        if self.store is None:
            raise InvocationError(f"{operation.upper()}_ERROR", f"Failed to {operation}: not open")
        return self.store

    @contextlib.contextmanager
    def _store_errors(self, operation: str) -> Iterator[None]:
        """A store that fails (Redis gone, disk full) answers the spec's ``<OP>_ERROR``."""
        try:
            yield
        except STORE_ERRORS as exc:
            raise InvocationError(
                f"{operation.upper()}_ERROR", f"Failed to {operation}: {exc}"
            ) from None

    async def set(self, data: Any, ctx: CallContext) -> Any:
        write = inputs.structure("state::set", data, StateWrite)
        scope, key, value = write.scope, write.key, write.value
        store = self._open_store("set")
        with self._store_errors("set"):
            old = await store.set(scope, key, value)
        self._emit("state:created" if old is None else "state:updated", scope, key, old, value)
        return {"old_value": old, "new_value": value}

    async def get(self, data: Any, ctx: CallContext) -> Any:
        address = inputs.structure("state::get", data, StateKey)
        with self._store_errors("get"):
            _, value = await self._open_store("get").get(address.scope, address.key)
        return value  # None: the result has no value (spec: "no result when missing")

    async def delete(self, data: Any, ctx: CallContext) -> Any:
        address = inputs.structure("state::delete", data, StateKey)
        scope, key = address.scope, address.key
        with self._store_errors("delete"):
            _, old = await self._open_store("delete").delete(scope, key)
        self._emit("state:deleted", scope, key, old, None)  # also when nothing was there
        return old

    async def update(self, data: Any, ctx: CallContext) -> Any:
        update = inputs.structure("state::update", data, StateUpdate)
        scope, key, ops = update.scope, update.key, update.ops
        store = self._open_store("update")
        with self._store_errors("update"):
            old, new = await store.update(scope, key, lambda current: apply_ops(current, ops))
        self._emit("state:created" if old is None else "state:updated", scope, key, old, new)
        return {"old_value": old, "new_value": new}

    async def list_values(self, data: Any, ctx: CallContext) -> Any:
        scope = inputs.structure("state::list", data, StateScope).scope
        with self._store_errors("list"):
            return await self._open_store("list").values(scope)

    async def list_groups(self, data: Any, ctx: CallContext) -> Any:
        with self._store_errors("list_groups"):
            return {"groups": await self._open_store("list_groups").scopes()}

    # --- the state trigger -------------------------------------------------------------------

    def _emit(self, event_type: str, scope: str, key: str, old: Any, new: Any) -> None:
        self._written.set()
        if not self.trigger.bindings:
            return
        try:
            self._events_in.send_nowait(StateEvent(event_type, scope, key, old, new))
        except trio.WouldBlock:
            self.dropped_events += 1
            log.warning(
                "state: %d events waiting; %s of %s/%s dropped",
                EVENT_QUEUE_CAPACITY,
                event_type,
                scope,
                key,
            )

    async def _deliver_events(self) -> None:
        slots = trio.CapacityLimiter(DELIVERIES_IN_FLIGHT)
        async with trio.open_nursery() as nursery:
            async for event in self._events_out:
                await slots.acquire_on_behalf_of(event)
                nursery.start_soon(self._deliver, event, slots)

    async def _deliver(self, event: StateEvent, slots: trio.CapacityLimiter) -> None:
        try:
            payload = event.payload()
            for binding in self.trigger.matching(event):
                await self.fire_binding(binding, payload)
        finally:
            slots.release_on_behalf_of(event)
