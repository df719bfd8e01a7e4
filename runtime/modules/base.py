"""What every engine module shares: register its functions and trigger types while it runs.

A module is an actor under the ``modules`` supervisor. Subclasses list their functions and
trigger types and, when they own sockets or background loops, override :meth:`serve`.
Functions and types are registered before ``serve`` starts and removed when the module
stops (also when it crashes and its supervisor restarts it).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from iii_trio.actors import Actor
from iii_trio.runtime.calls.errors import InvocationError, deserialization_error
from iii_trio.runtime.calls.invocation import EngineFunction, LocalHandler

if TYPE_CHECKING:
    from iii_trio.runtime.calls.registry import Binding, EngineTriggerType
    from iii_trio.runtime.engine import Engine

log = logging.getLogger("iii_trio.modules")


def required_topic(function_id: str, data: Any) -> str:
    """The ``topic`` of ``publish`` / ``enqueue`` input; an empty one is ``topic_not_set``."""
    if not isinstance(data, dict):
        raise deserialization_error(function_id, "expected an object")
    topic = data.get("topic")
    if topic is not None and not isinstance(topic, str):
        raise deserialization_error(function_id, "`topic` must be a string")
    if not topic:
        raise InvocationError("topic_not_set", "Topic is not set")
    return topic


class EngineModule(Actor):
    kind = "module"

    def __init__(self, engine: Engine, name: str) -> None:
        super().__init__(name)
        self.engine = engine

    def functions(self) -> dict[str, tuple[LocalHandler, str]]:
        """Function id -> (handler, description)."""
        return {}

    def trigger_types(self) -> list[EngineTriggerType]:
        return []

    async def fire_binding(self, binding: Binding, payload: Any) -> None:
        """Deliver ``payload`` to a binding the way the spec's triggers do (§2.2): its
        condition function first, when it has one (only a literal ``false`` skips), then its
        function, awaited. Failures are logged, not retried."""
        router = self.engine.router
        condition = (binding.config or {}).get("condition_function_id")
        try:
            if (
                condition
                and await router.call(condition, payload, caller_module=self.name) is False
            ):
                return
            await router.call(binding.function_id, payload, caller_module=self.name)
        except InvocationError as exc:
            log.info("%s: %s -> %s failed: %s", self.name, binding.id, binding.function_id, exc)

    def introspect(self) -> dict[str, Any]:
        """Counters for ``engine::modules::list`` (depths, sizes, subscriptions)."""
        return {}

    async def drain(self) -> None:
        """Finish work in flight before shutdown (stop taking new work first); the engine
        bounds the wait with its drain timeout."""

    async def serve(self, task_status: trio.TaskStatus[Any]) -> None:
        """Run until cancelled; call ``task_status.started()`` once ready (ports bound)."""
        task_status.started()
        await trio.sleep_forever()

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        registry = self.engine.registry
        functions = self.functions()
        types = self.trigger_types()
        for function_id, (handler, description) in functions.items():
            registry.add_engine_function(EngineFunction(function_id, handler, description))
        for trigger_type in types:
            registry.engine_types[trigger_type.id] = trigger_type
        self.engine.modules[self.name] = self
        try:
            await self.serve(task_status)
        finally:
            if self.engine.modules.get(self.name) is self:
                del self.engine.modules[self.name]
            for function_id in functions:
                registry.remove_engine_function(function_id)
            for trigger_type in types:
                if registry.engine_types.get(trigger_type.id) is trigger_type:
                    del registry.engine_types[trigger_type.id]
