"""The engine's built-in functions and trigger types (WorkerModule, spec §5, D12).

Always loaded. Each function takes the decoded input and a :class:`CallContext` and runs
inside its own invocation actor, like any routed call.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from iii_trio.runtime.builtins.actor_rows import actor_row, tree_row
from iii_trio.runtime.calls.errors import InvocationError, deserialization_error
from iii_trio.runtime.calls.invocation import CallContext, LocalHandler
from iii_trio.runtime.calls.registry import Binding, EngineTriggerType
from iii_trio.runtime.modules.base import EngineModule

if TYPE_CHECKING:
    from iii_trio.runtime.engine import Engine


def now_ms() -> int:
    return int(time.time() * 1000)


class EventTriggerType:
    """An engine trigger type that takes config ``{}`` and fires payloads the engine emits."""

    def __init__(self, type_id: str, description: str) -> None:
        self.id = type_id
        self.description = description
        self.bindings: list[Binding] = []

    def bind(self, binding: Binding) -> None:
        self.bindings.append(binding)

    def unbind(self, binding: Binding) -> None:
        if binding in self.bindings:
            self.bindings.remove(binding)


def _object(function_id: str, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise deserialization_error(function_id, "expected an object")
    return data


def _flag(function_id: str, data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise deserialization_error(function_id, f"'{key}' must be a boolean")
    return value


class WorkerModule(EngineModule):
    """The built-ins: listings, introspection, channels and the engine's event triggers."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, "worker")
        self.functions_available = EventTriggerType(
            "engine::functions-available", "Fires when the set of functions changes"
        )
        self.workers_available = EventTriggerType(
            "engine::workers-available", "Fires when a worker connects, disconnects or updates"
        )

    def functions(self) -> dict[str, tuple[LocalHandler, str]]:
        return {
            "engine::workers::register": (self.workers_register, "Attach worker metadata"),
            "engine::functions::list": (self.functions_list, "List registered functions"),
            "engine::workers::list": (self.workers_list, "List connected workers"),
            "engine::triggers::list": (self.triggers_list, "List trigger bindings"),
            "engine::trigger-types::list": (self.trigger_types_list, "List trigger types"),
            "engine::channels::create": (self.channels_create, "Create a streaming channel"),
            "engine::actors::list": (self.actors_list, "List live actors"),
            "engine::actors::tree": (self.actors_tree, "The live actor tree"),
            "engine::invocations::list": (self.invocations_list, "List live invocations"),
            "engine::invocations::get": (self.invocations_get, "One live invocation"),
            "engine::modules::list": (self.modules_list, "Loaded modules and their counters"),
        }

    def trigger_types(self) -> list[EngineTriggerType]:
        return [self.functions_available, self.workers_available]

    def introspect(self) -> dict[str, Any]:
        registry = self.engine.registry
        return {
            "connections": len(self.engine.connections),
            "functions": len(registry.functions),
            "bindings": len(registry.bindings),
        }

    def fire(self, trigger_type: EventTriggerType, payload: Any) -> None:
        for binding in list(trigger_type.bindings):
            self.engine.router.fire(binding.function_id, payload, caller_module="worker")

    # --- functions ---------------------------------------------------------------------------

    async def workers_register(self, data: Any, ctx: CallContext) -> Any:
        body = _object("engine::workers::register", data)
        conn = self.engine.connections.get(str(body.get("_caller_worker_id")))
        if conn is not None:
            conn.metadata = {k: v for k, v in body.items() if k != "_caller_worker_id"}
            conn.listed = True
            self.engine.worker_event("worker_metadata_updated", conn.worker_id)
        return {"success": True}

    async def functions_list(self, data: Any, ctx: CallContext) -> Any:
        body = data if isinstance(data, dict) else {}
        internal = _flag("engine::functions::list", body, "include_internal")
        return {"functions": self.engine.registry.function_rows(include_internal=internal)}

    async def workers_list(self, data: Any, ctx: CallContext) -> Any:
        body = data if isinstance(data, dict) else {}
        wanted = body.get("worker_id")
        rows = [
            conn.worker_row()
            for conn in self.engine.connections.values()
            if conn.listed and (wanted is None or conn.worker_id == wanted)
        ]
        return {"workers": rows, "timestamp": now_ms()}

    async def triggers_list(self, data: Any, ctx: CallContext) -> Any:
        body = data if isinstance(data, dict) else {}
        internal = _flag("engine::triggers::list", body, "include_internal")
        return {"triggers": self.engine.registry.binding_rows(include_internal=internal)}

    async def trigger_types_list(self, data: Any, ctx: CallContext) -> Any:
        return {"trigger_types": self.engine.registry.trigger_type_rows()}

    async def channels_create(self, data: Any, ctx: CallContext) -> Any:
        body = data if isinstance(data, dict) else {}
        size = body.get("buffer_size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            raise deserialization_error(
                "engine::channels::create", "'buffer_size' must be an integer"
            )
        channel = self.engine.channels.create(size)
        return {"writer": channel.ref("write"), "reader": channel.ref("read")}

    async def actors_list(self, data: Any, ctx: CallContext) -> Any:
        rows = [actor_row(actor) for actor in self.engine.system.rows()]
        return {"actors": rows, "timestamp": now_ms()}

    async def actors_tree(self, data: Any, ctx: CallContext) -> Any:
        roots = [tree_row(node) for node in self.engine.system.tree()]
        return {"roots": roots, "timestamp": now_ms()}

    async def invocations_list(self, data: Any, ctx: CallContext) -> Any:
        now = now_ms()
        rows = [row for row in self.engine.router.rows(now) if row["id"] != ctx.invocation_id]
        return {"invocations": rows, "timestamp": now}

    async def modules_list(self, data: Any, ctx: CallContext) -> Any:
        rows = [
            {"name": name, "status": module.introspect()}
            for name, module in self.engine.modules.items()
        ]
        return {"modules": rows, "timestamp": now_ms()}

    async def invocations_get(self, data: Any, ctx: CallContext) -> Any:
        body = _object("engine::invocations::get", data)
        invocation_id = body.get("id")
        if not isinstance(invocation_id, str):
            raise deserialization_error("engine::invocations::get", "missing field 'id'")
        row = self.engine.router.row(invocation_id, now_ms())
        if row is None:
            raise InvocationError("invocation_not_found", f"Invocation {invocation_id} not found")
        return row
