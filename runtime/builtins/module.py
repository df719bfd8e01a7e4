"""The engine's built-in functions (WorkerModule, spec §5, D12).

Always loaded, as the first child of ``modules``. Each function takes the decoded input and
a :class:`CallContext` and runs inside its own invocation, like any routed call. Unlike the
config's modules, which see the engine only through their narrow context, this is the
engine's own part: it reads the registry, the live connections, the actor tree and the
live invocations directly.
"""

from __future__ import annotations

from typing import Any, Protocol

import trio

from iii_trio.actors import Actor, ActorSystem
from iii_trio.runtime.builtins.actor_rows import actor_row, tree_row
from iii_trio.runtime.builtins.events import EngineEvents
from iii_trio.runtime.builtins.inputs import (
    ChannelRequest,
    InvocationQuery,
    Listing,
    WorkerQuery,
    WorkerRegistration,
)
from iii_trio.runtime.calls import inputs
from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.calls.invocation import CallContext, EngineFunction, LocalHandler
from iii_trio.runtime.calls.registry import Registry
from iii_trio.runtime.calls.router import Router
from iii_trio.runtime.clock import now_ms
from iii_trio.runtime.connections.channels import ChannelTable
from iii_trio.runtime.connections.dispatch import Dispatcher


class RunningModule(Protocol):
    """A running module, as the engine's table of modules holds it."""

    def introspect(self) -> dict[str, Any]:
        """Counters for ``engine::modules::list`` (depths, sizes, subscriptions)."""
        ...

    async def drain(self) -> None:
        """Finish work in flight before shutdown (the engine bounds the wait)."""
        ...


class WorkerModule(Actor):
    """The built-ins: listings, introspection, channels and the engine's event triggers.

    ``modules`` is the engine's table of running modules by name (this one included, under
    ``worker``), read by ``engine::modules::list``."""

    kind = "module"

    def __init__(
        self,
        *,
        registry: Registry,
        router: Router,
        dispatcher: Dispatcher,
        channels: ChannelTable,
        system: ActorSystem,
        events: EngineEvents,
        modules: dict[str, RunningModule],
    ) -> None:
        super().__init__("worker")
        self.registry = registry
        self.router = router
        self.dispatcher = dispatcher
        self.channels = channels
        self.system = system
        self.events = events
        self.modules = modules

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

    def introspect(self) -> dict[str, Any]:
        return {
            "connections": len(self.dispatcher.connections),
            "functions": len(self.registry.functions),
            "bindings": len(self.registry.bindings),
        }

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        functions = [
            EngineFunction(function_id, handler, description)
            for function_id, (handler, description) in self.functions().items()
        ]
        types = [self.events.functions_available, self.events.workers_available]
        with self.registry.hosting(functions, types):
            self.modules[self.name] = self
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                if self.modules.get(self.name) is self:
                    del self.modules[self.name]

    async def drain(self) -> None:
        """Nothing of its own in flight: its calls are invocations the engine drains."""

    # --- functions ---------------------------------------------------------------------------

    async def workers_register(self, data: Any, ctx: CallContext) -> Any:
        caller = inputs.structure("engine::workers::register", data, WorkerRegistration)
        conn = self.dispatcher.connections.get(str(caller.caller_worker_id))
        if conn is not None:
            conn.session.set_metadata({k: v for k, v in data.items() if k != "_caller_worker_id"})
            self.dispatcher.worker_event("worker_metadata_updated", conn.worker_id)
        return {"success": True}

    async def functions_list(self, data: Any, ctx: CallContext) -> Any:
        internal = inputs.structure("engine::functions::list", data, Listing).include_internal
        return {"functions": self.registry.function_rows(include_internal=internal)}

    async def workers_list(self, data: Any, ctx: CallContext) -> Any:
        wanted = inputs.structure("engine::workers::list", data, WorkerQuery).worker_id
        rows = [
            conn.session.row(active_invocations=len(conn.assigned))
            for conn in self.dispatcher.connections.values()
            if conn.session.listed and (wanted is None or conn.worker_id == wanted)
        ]
        return {"workers": rows, "timestamp": now_ms()}

    async def triggers_list(self, data: Any, ctx: CallContext) -> Any:
        internal = inputs.structure("engine::triggers::list", data, Listing).include_internal
        return {"triggers": self.registry.binding_rows(include_internal=internal)}

    async def trigger_types_list(self, data: Any, ctx: CallContext) -> Any:
        return {"trigger_types": self.registry.trigger_type_rows()}

    async def channels_create(self, data: Any, ctx: CallContext) -> Any:
        size = inputs.structure("engine::channels::create", data, ChannelRequest).buffer_size
        creator = ctx.caller.worker_id if ctx.caller is not None else None
        channel = self.channels.create_for_worker(creator, size)  # quota_exceeded beyond
        return {"writer": channel.ref("write"), "reader": channel.ref("read")}

    async def actors_list(self, data: Any, ctx: CallContext) -> Any:
        rows = [actor_row(actor) for actor in self.system.rows()]
        return {"actors": rows, "timestamp": now_ms()}

    async def actors_tree(self, data: Any, ctx: CallContext) -> Any:
        roots = [tree_row(node) for node in self.system.tree()]
        return {"roots": roots, "timestamp": now_ms()}

    async def invocations_list(self, data: Any, ctx: CallContext) -> Any:
        now = now_ms()
        rows = [row for row in self.router.rows(now) if row["id"] != ctx.invocation_id]
        return {"invocations": rows, "timestamp": now}

    async def modules_list(self, data: Any, ctx: CallContext) -> Any:
        rows = [
            {"name": name, "status": module.introspect()} for name, module in self.modules.items()
        ]
        return {"modules": rows, "timestamp": now_ms()}

    async def invocations_get(self, data: Any, ctx: CallContext) -> Any:
        invocation_id = inputs.structure(
            "engine::invocations::get", data, InvocationQuery
        ).invocation_id
        row = self.router.row(invocation_id, now_ms())
        if row is None:
            raise InvocationError("invocation_not_found", f"Invocation {invocation_id} not found")
        return row
