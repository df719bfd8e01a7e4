"""StreamModule (``modules::stream::StreamModule``, ``iii-stream``; spec/modules.md §5, D11).

``stream::*`` functions keep items on the key-value store of the module's adapter
(:mod:`.adapters`, :mod:`.items`); every change becomes one event message (§5.3) that goes to

- the subscribed WebSocket clients of the client port (:mod:`.clients`), through the
  adapter: directly with the KvStore adapter; through a Redis channel with the
  RedisAdapter, so every engine on that Redis delivers every engine's changes to its own
  clients;
- the ``stream`` bindings of this engine, after the change, in a background task: events
  wait in a bounded queue (:data:`EVENT_QUEUE_CAPACITY`; beyond it an event's trigger
  delivery is dropped with a warning), at most :data:`DELIVERIES_IN_FLIGHT` events are
  delivered at once, and the bindings of one event are called one after another. Order
  between events is not guaranteed (as in the reference); errors are logged.

Per-stream overrides: when a function ``stream::<op>(<stream_name>)`` is registered,
``stream::<op>`` delegates to it with the parsed input; events and triggers still fire.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from iii_trio.runtime.calls import inputs
from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.calls.invocation import CallContext, LocalHandler
from iii_trio.runtime.connections.access import ExposedPort
from iii_trio.runtime.modules.base import EngineModule
from iii_trio.runtime.modules.storage.config import RedisAdapterConfig, StreamKvStoreConfig
from iii_trio.runtime.modules.storage.kv import STORE_ERRORS
from iii_trio.runtime.modules.storage.kv.ops import apply_ops
from iii_trio.runtime.modules.stream import adapters
from iii_trio.runtime.modules.stream.adapters import PUBLISH_ERRORS
from iii_trio.runtime.modules.stream.clients import ClientServer, Refused
from iii_trio.runtime.modules.stream.config import StreamConfig
from iii_trio.runtime.modules.stream.inputs import (
    NoInput,
    StreamEvent,
    StreamGroup,
    StreamItem,
    StreamName,
    StreamUpdate,
    StreamWrite,
)
from iii_trio.runtime.modules.stream.items import Counts, StreamItems
from iii_trio.runtime.modules.stream.messages import ClientRequest, event_message
from iii_trio.runtime.modules.stream.triggers import StreamTrigger, SubscriptionTrigger
from iii_trio.runtime.wire.handshake import Rejection

if TYPE_CHECKING:
    from iii_trio.runtime.calls.registry import Binding, EngineTriggerType
    from iii_trio.runtime.config.loading import ModuleEntry
    from iii_trio.runtime.modules.context import ModuleContext

log = logging.getLogger("iii_trio.stream")

# Events waiting for `stream` trigger delivery; beyond this an event's delivery is dropped.
EVENT_QUEUE_CAPACITY = 1024
# Events being delivered to `stream` bindings at once.
DELIVERIES_IN_FLIGHT = 64
# Answers of a guard call that mean "not there now" (503, retry) rather than "refused" (401).
_UNAVAILABLE = frozenset(
    {"function_not_found", "timeout", "invocation_stopped", "channel_send_failed"}
)
# Item counts for introspection are recounted at most this often while items change.
COUNTS_REFRESH_SECONDS = 1.0


def create(ctx: ModuleContext, entry: ModuleEntry) -> StreamModule:
    assert isinstance(entry.config, StreamConfig)
    # Its adapter is one this build has: checked by the catalog before the engine starts.
    assert isinstance(entry.config.adapter, StreamKvStoreConfig | RedisAdapterConfig)
    return StreamModule(ctx, entry.config)


def _change_event(old: Any, new: Any) -> dict[str, Any]:
    return {"type": "create" if old is None else "update", "data": new}


class StreamModule(EngineModule):
    def __init__(self, ctx: ModuleContext, config: StreamConfig) -> None:
        super().__init__(ctx)
        self.config = config
        assert isinstance(config.adapter, StreamKvStoreConfig | RedisAdapterConfig)
        self.adapter = adapters.create(config.adapter, self._to_clients)
        self.items: StreamItems | None = None
        self.port: int | None = None
        self.trigger = StreamTrigger()
        self.join_trigger = SubscriptionTrigger("stream:join", "Called when a client joins")
        self.leave_trigger = SubscriptionTrigger("stream:leave", "Called when a client leaves")
        self.clients = ClientServer(
            self,
            outbox_capacity=self.adapter.outbox_capacity,
            with_auth=config.auth_function is not None,
            access=ctx.access,
            gate=ctx.port_gate(
                "stream port", config.max_connections, config.max_connections_per_address
            ),
            keepalive=ctx.keepalive,
            max_subscriptions=config.max_subscriptions_per_client,
        )
        self._events_in, self._events_out = trio.open_memory_channel[
            tuple[list["Binding"], dict[str, Any]]
        ](EVENT_QUEUE_CAPACITY)
        self.dropped_events = 0
        self.counts = Counts()
        self._counts_stale = trio.Event()

    def functions(self) -> dict[str, tuple[LocalHandler, str]]:
        return {
            "stream::set": (self.set, "Store an item of a stream group"),
            "stream::get": (self.get, "Read an item of a stream group"),
            "stream::delete": (self.delete, "Delete an item of a stream group"),
            "stream::update": (self.update, "Apply update operations to an item atomically"),
            "stream::list": (self.list_items, "Every item of a stream group"),
            "stream::list_groups": (self.list_groups, "The groups of a stream"),
            "stream::list_all": (self.list_all, "Every stream with its groups"),
            "stream::send": (self.send, "Send a custom event to a stream group's subscribers"),
        }

    def trigger_types(self) -> list[EngineTriggerType]:
        return [self.trigger, self.join_trigger, self.leave_trigger]

    def introspect(self) -> dict[str, Any]:
        return {
            "adapter": self.adapter.name,
            "port": self.port,
            "streams": self.counts.streams,
            "groups": self.counts.groups,
            "items": self.counts.items,
            **self.clients.introspect(),
            "bindings": len(self.trigger.bindings),
            "join_bindings": len(self.join_trigger.bindings),
            "leave_bindings": len(self.leave_trigger.bindings),
            "events_waiting": self._events_out.statistics().current_buffer_used,
            "events_dropped": self.dropped_events,
        }

    async def serve(self, task_status: trio.TaskStatus[Any]) -> None:
        async with self.adapter.open() as items:
            self.items = items
            async with trio.open_nursery() as nursery:
                await nursery.start(self.adapter.follow)
                self.port = await nursery.start(
                    self.clients.serve, self.config.host, self.config.port
                )
                nursery.start_soon(self._deliver_events)
                nursery.start_soon(self._refresh_counts)
                exposed = ExposedPort(
                    "stream port", self.config.host, self.port, self.ctx.access.describe()
                )
                with self.ctx.exposing(exposed):
                    task_status.started()
                    await trio.sleep_forever()

    def _store(self, code: str, operation: str) -> StreamItems:
        if self.items is None:
            raise InvocationError(code, f"Failed to {operation}: the stream store is not open")
        return self.items

    # --- per-stream overrides ----------------------------------------------------------------

    def _override(self, operation: str, stream_name: str) -> str | None:
        function_id = f"stream::{operation}({stream_name})"
        return function_id if self.ctx.has_function(function_id) else None

    async def _call_override(
        self, function_id: str, data: dict[str, Any], code: str, operation: str, shape: str
    ) -> dict[str, Any]:
        """A ``set`` / ``delete`` / ``update`` override's result, checked for ``shape``."""
        try:
            result = await self.ctx.call(function_id, data)
        except InvocationError as exc:
            raise InvocationError(
                code, f"Failed to {operation}: Failed to invoke function: {exc.message}"
            ) from None
        if result is None:
            raise InvocationError(code, f"Failed to {operation}: Function returned no result")
        if not isinstance(result, dict) or (shape == "change" and "new_value" not in result):
            expected = "{old_value, new_value}" if shape == "change" else "{old_value}"
            raise InvocationError(
                "JSON_ERROR",
                f"Failed to convert result to value: {function_id} must return {expected}",
            )
        return result

    # --- functions ---------------------------------------------------------------------------

    async def set(self, data: Any, ctx: CallContext) -> Any:
        write = inputs.structure("stream::set", data, StreamWrite)
        stream_name, group_id, item_id = write.stream_name, write.group_id, write.item_id
        value = write.data
        override = self._override("set", stream_name)
        if override is not None:
            forwarded = {**_ids(stream_name, group_id, item_id), "data": value}
            result = await self._call_override(
                override, forwarded, "STREAM_SET_ERROR", "set value", "change"
            )
            old, new = result.get("old_value"), result["new_value"]
        else:
            items = self._store("STREAM_SET_ERROR", "set value")
            try:
                old = await items.set(stream_name, group_id, item_id, value)
            except STORE_ERRORS as exc:
                raise InvocationError("STREAM_SET_ERROR", f"Failed to set value: {exc}") from None
            new = value
        await self._changed(event_message(stream_name, group_id, item_id, _change_event(old, new)))
        return {"old_value": old, "new_value": new}

    async def get(self, data: Any, ctx: CallContext) -> Any:
        item = inputs.structure("stream::get", data, StreamItem)
        return await self._get(item.stream_name, item.group_id, item.item_id)

    async def _get(self, stream_name: str, group_id: str, item_id: str) -> Any:
        override = self._override("get", stream_name)
        if override is not None:
            forwarded = _ids(stream_name, group_id, item_id)
            return await self.ctx.call(override, forwarded)
        items = self._store("STREAM_GET_ERROR", "get value")
        try:
            return await items.get(stream_name, group_id, item_id)  # None: no result
        except STORE_ERRORS as exc:
            raise InvocationError("STREAM_GET_ERROR", f"Failed to get value: {exc}") from None

    async def delete(self, data: Any, ctx: CallContext) -> Any:
        item = inputs.structure("stream::delete", data, StreamItem)
        stream_name, group_id, item_id = item.stream_name, item.group_id, item.item_id
        override = self._override("delete", stream_name)
        if override is not None:
            result = await self._call_override(
                override,
                _ids(stream_name, group_id, item_id),
                "STREAM_DELETE_ERROR",
                "delete value",
                "delete",
            )
            old = result.get("old_value")
            existed = old is not None
        else:
            items = self._store("STREAM_DELETE_ERROR", "delete value")
            try:
                existed, old = await items.delete(stream_name, group_id, item_id)
            except STORE_ERRORS as exc:
                raise InvocationError(
                    "STREAM_DELETE_ERROR", f"Failed to delete value: {exc}"
                ) from None
        if existed:  # no event for an item that was not there
            event = {"type": "delete", "data": old}
            await self._changed(event_message(stream_name, group_id, item_id, event))
        return {"old_value": old}

    async def update(self, data: Any, ctx: CallContext) -> Any:
        update = inputs.structure("stream::update", data, StreamUpdate)
        stream_name, group_id, item_id = update.stream_name, update.group_id, update.item_id
        ops = update.ops
        override = self._override("update", stream_name)
        if override is not None:
            forwarded = {**_ids(stream_name, group_id, item_id), "ops": data["ops"]}
            result = await self._call_override(
                override, forwarded, "STREAM_UPDATE_ERROR", "update value", "change"
            )
            old, new = result.get("old_value"), result["new_value"]
        else:
            items = self._store("STREAM_UPDATE_ERROR", "update value")
            try:
                old, new = await items.update(
                    stream_name, group_id, item_id, lambda current: apply_ops(current, ops)
                )
            except STORE_ERRORS as exc:
                raise InvocationError(
                    "STREAM_UPDATE_ERROR", f"Failed to update value: {exc}"
                ) from None
        await self._changed(event_message(stream_name, group_id, item_id, _change_event(old, new)))
        return {"old_value": old, "new_value": new}

    async def list_items(self, data: Any, ctx: CallContext) -> Any:
        group = inputs.structure("stream::list", data, StreamGroup)
        return await self._list(group.stream_name, group.group_id)

    async def _list(self, stream_name: str, group_id: str) -> Any:
        override = self._override("list", stream_name)
        if override is not None:
            forwarded = {"stream_name": stream_name, "group_id": group_id}
            return await self.ctx.call(override, forwarded)
        items = self._store("STREAM_GET_GROUP_ERROR", "get group")
        try:
            return await items.values(stream_name, group_id)
        except STORE_ERRORS as exc:
            raise InvocationError("STREAM_GET_GROUP_ERROR", f"Failed to get group: {exc}") from None

    async def list_groups(self, data: Any, ctx: CallContext) -> Any:
        stream_name = inputs.structure("stream::list_groups", data, StreamName).stream_name
        override = self._override("list_groups", stream_name)
        if override is not None:
            forwarded = {"stream_name": stream_name}
            return await self.ctx.call(override, forwarded)
        items = self._store("STREAM_LIST_GROUPS_ERROR", "list groups")
        try:
            return await items.groups(stream_name)
        except STORE_ERRORS as exc:
            raise InvocationError(
                "STREAM_LIST_GROUPS_ERROR", f"Failed to list groups: {exc}"
            ) from None

    async def list_all(self, data: Any, ctx: CallContext) -> Any:
        inputs.structure("stream::list_all", data, NoInput)
        items = self._store("STREAM_LIST_ALL_ERROR", "list stream")
        try:
            streams = await items.streams()
        except STORE_ERRORS as exc:
            raise InvocationError(
                "STREAM_LIST_ALL_ERROR", f"Failed to list stream: {exc}"
            ) from None
        rows = [{"id": name, "groups": groups} for name, groups in streams.items()]
        return {"stream": rows, "count": len(rows)}

    async def send(self, data: Any, ctx: CallContext) -> Any:
        sent = inputs.structure("stream::send", data, StreamEvent)
        event = {"type": "event", "event": {"type": sent.event_type, "data": sent.data}}
        message = event_message(sent.stream_name, sent.group_id, sent.item_id, event)
        self._queue_triggers(message)
        try:
            await self.adapter.publish(message)
        except PUBLISH_ERRORS as exc:
            raise InvocationError("STREAM_SEND_ERROR", f"Failed to send event: {exc}") from None
        return None

    # --- events ------------------------------------------------------------------------------

    async def _changed(self, message: dict[str, Any]) -> None:
        """An item changed: fire the triggers, tell the clients (failures logged)."""
        self._queue_triggers(message)
        self._counts_stale.set()
        try:
            await self.adapter.publish(message)
        except PUBLISH_ERRORS as exc:
            log.error("stream: failed to publish an event to Redis: %s", exc)

    def _to_clients(self, message: dict[str, Any]) -> None:
        """An event message for this engine's clients, from the adapter (with Redis: from any
        engine, this one included)."""
        if message["event"].get("type") != "event":  # an item changed, maybe elsewhere
            self._counts_stale.set()
        self.clients.deliver(message)

    def _queue_triggers(self, message: dict[str, Any]) -> None:
        bindings = self.trigger.matching(message)
        if not bindings:
            return
        try:
            self._events_in.send_nowait((bindings, message))
        except trio.WouldBlock:
            self.dropped_events += 1
            log.warning(
                "stream: %d events waiting for triggers; an event of %s/%s dropped",
                EVENT_QUEUE_CAPACITY,
                message["streamName"],
                message["groupId"],
            )

    async def _deliver_events(self) -> None:
        slots = trio.CapacityLimiter(DELIVERIES_IN_FLIGHT)
        async with trio.open_nursery() as nursery:
            async for bindings, message in self._events_out:
                token = object()
                await slots.acquire_on_behalf_of(token)
                nursery.start_soon(self._deliver, bindings, message, slots, token)

    async def _deliver(
        self,
        bindings: list[Binding],
        message: dict[str, Any],
        slots: trio.CapacityLimiter,
        token: object,
    ) -> None:
        try:
            for binding in bindings:
                await self.fire_binding(binding, message)
        finally:
            slots.release_on_behalf_of(token)

    async def _refresh_counts(self) -> None:
        while True:
            if self.items is not None:
                try:
                    self.counts = await self.items.counts()
                except STORE_ERRORS as exc:
                    log.debug("stream: counting items failed: %s", exc)
            await self._counts_stale.wait()
            self._counts_stale = trio.Event()
            await trio.sleep(COUNTS_REFRESH_SECONDS)

    # --- the client port's callbacks (clients.ClientHost) --------------------------------------

    async def authenticate(self, info: dict[str, Any]) -> Any:
        """The auth function's ``context``; it fails closed (clients.Refused): an error from
        the function refuses the client (401), a function that is not registered or does
        not answer within ``guard_timeout_ms`` refuses it for now (503)."""
        function_id = self.config.auth_function
        if function_id is None:
            return None
        try:
            result = await self.ctx.call(function_id, info, timeout_ms=self.config.guard_timeout_ms)
        except InvocationError as exc:
            if exc.code in _UNAVAILABLE:
                rejection = Rejection(503, "the auth function is not available; retry later\n")
            else:
                rejection = Rejection(401, "unauthorized\n")
            raise Refused(rejection, f"auth function {function_id}: {exc}") from None
        return result.get("context") if isinstance(result, dict) else None

    async def join_allowed(self, payload: dict[str, Any]) -> bool:
        """Every ``stream:join`` binding is called, in order; the join is refused when one
        answers ``{unauthorized: true}``, fails, or does not answer within
        ``guard_timeout_ms`` (guards fail closed)."""
        allowed = True
        for binding in list(self.join_trigger.bindings):
            try:
                result = await self.ctx.call(
                    binding.function_id, payload, timeout_ms=self.config.guard_timeout_ms
                )
            except InvocationError as exc:
                log.info(
                    "stream: join binding %s failed, join refused: %s", binding.function_id, exc
                )
                allowed = False
                continue
            if isinstance(result, dict) and result.get("unauthorized") is True:
                allowed = False
        return allowed

    async def left(self, payload: dict[str, Any]) -> None:
        for binding in list(self.leave_trigger.bindings):
            try:
                await self.ctx.call(binding.function_id, payload)
            except InvocationError as exc:
                log.info("stream: leave binding %s failed: %s", binding.function_id, exc)

    async def sync_data(self, request: ClientRequest) -> tuple[bool, Any]:
        try:
            if request.item_id is not None:
                return True, await self._get(request.stream_name, request.group_id, request.item_id)
            return True, await self._list(request.stream_name, request.group_id)
        except InvocationError as exc:
            log.info("stream: sync of %s/%s failed: %s", request.stream_name, request.group_id, exc)
            return False, None


def _ids(stream_name: str, group_id: str, item_id: str) -> dict[str, Any]:
    return {"stream_name": stream_name, "group_id": group_id, "item_id": item_id}
