"""What every engine module shares: it offers what it declares while it runs.

A module is an actor under the ``modules`` supervisor, made afresh by its kind's factory for
every (re)start, with the one :class:`~iii_trio.runtime.modules.context.ModuleContext` the
engine made for it. Subclasses declare their functions, trigger types, invoke actions, HTTP
endpoints and gauge families and, when they own sockets or background loops, override
:meth:`EngineModule.serve`. Functions, invoke actions, endpoints and gauges are offered
before ``serve`` starts, trigger types once it reports started (each with every binding of
its id the registry kept: a restarted module gets its predecessor's bindings back), and all
of it is withdrawn when the module stops (also when it crashes and its supervisor restarts
it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio

from iii_trio.actors import Actor
from iii_trio.runtime.calls import inputs
from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.calls.invocation import EngineFunction, LocalHandler
from iii_trio.runtime.calls.registry import Binding, EngineTriggerType
from iii_trio.runtime.connections.dispatch import InvokeAction
from iii_trio.runtime.modules.context import GaugeFamily, HttpEndpoint, ModuleContext

log = logging.getLogger("iii_trio.modules")


@attrs.frozen(kw_only=True)
class TopicMessage:
    """The input of ``publish`` and ``enqueue``: ``{topic, data?}``; an absent or empty
    topic is ``topic_not_set``."""

    topic: str = inputs.field(
        missing=inputs.Refusal("topic_not_set", "Topic is not set"), blank_is_missing=True
    )
    data: Any = None


class EngineModule(Actor):
    kind = "module"

    def __init__(self, ctx: ModuleContext) -> None:
        super().__init__(ctx.name)
        self.ctx = ctx

    # --- what the module offers (each read once, when it starts) ---------------------------

    def functions(self) -> dict[str, tuple[LocalHandler, str]]:
        """Function id -> (handler, description)."""
        return {}

    def trigger_types(self) -> list[EngineTriggerType]:
        return []

    def invoke_actions(self) -> Mapping[str, InvokeAction]:
        """Invoke action type (``enqueue``) -> its handler."""
        return {}

    def http_endpoints(self) -> Mapping[str, HttpEndpoint]:
        """GET endpoints served on the HTTP module's port when no route takes the path."""
        return {}

    def gauges(self) -> list[GaugeFamily]:
        return []

    # --- behaviour -------------------------------------------------------------------------

    async def fire_binding(self, binding: Binding, payload: Any) -> None:
        """Deliver ``payload`` to a binding the way the spec's triggers do (§2.2): its
        condition function first, when it has one (only a literal ``false`` skips), then its
        function, awaited. Failures are logged, not retried."""
        condition = (binding.config or {}).get("condition_function_id")
        try:
            if condition and await self.ctx.call(condition, payload) is False:
                return
            await self.ctx.call(binding.function_id, payload)
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
        functions = [
            EngineFunction(function_id, handler, description)
            for function_id, (handler, description) in self.functions().items()
        ]
        with self.ctx.hosting(
            self,
            functions=functions,
            trigger_types=self.trigger_types(),
            invoke_actions=self.invoke_actions(),
            http_endpoints=self.http_endpoints(),
            gauges=self.gauges(),
        ) as ready:
            await self.serve(_ReadyOnStart(task_status, ready))


class _ReadyOnStart:
    """The ``task_status`` handed to :meth:`EngineModule.serve`: reporting started also
    tells the module's hosting it is ready, which offers its trigger types (and with them
    every binding the registry kept for them, e.g. across a restart) before the supervisor
    hears that the module runs."""

    __slots__ = ("_inner", "_ready")

    def __init__(self, inner: trio.TaskStatus[Any], ready: Callable[[], None]) -> None:
        self._inner = inner
        self._ready = ready

    def started(self, value: Any = None) -> None:
        self._ready()
        self._inner.started(value)
