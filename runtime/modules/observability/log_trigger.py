"""The ``log`` trigger type (spec/modules.md §9.5): each stored log record, to its bindings.

Config ``{level: "all" (default) | "trace" | "debug" | "info" | "warn" | "error"}``; a
binding receives the records whose lower-cased ``severity_text`` equals its level (``all``:
every record). Other keys (N3's ``severity_min: 0``) are ignored.

Bounded: records wait in a queue of :data:`QUEUE_CAPACITY`; when it is full a record is
not delivered (it stays stored) and ``dropped`` counts it. At most
:data:`DELIVERIES_IN_FLIGHT` handler calls run at once, so delivery order across records is
not guaranteed.

No feedback loop: each delivery is an engine-originated invocation that starts a trace of
its own, and the module remembers the trace ids of the last :data:`ECHO_MEMORY`
deliveries. A record in one of those traces was written while handling a log (an
``engine::log::*`` call from the handler, or the handler's SDK logger, whose ``LOGS``
frames carry the trace id): it is stored and listed but not delivered to ``log``
bindings, and ``echoes_suppressed`` counts it. This relies on the handler's SDK passing
the invocation's ``traceparent`` on (the trio SDK, iii-sdk 0.25.0 and the npm SDK do);
for one that does not, the queue bound and the drop counter are what limit a loop.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import trio

from iii_trio.runtime.calls import inputs
from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.calls.tracing import current_span

if TYPE_CHECKING:
    from iii_trio.runtime.calls.registry import Binding
    from iii_trio.runtime.modules.context import ModuleContext

log = logging.getLogger("iii_trio.otel")

QUEUE_CAPACITY = 1024  # records waiting for delivery
DELIVERIES_IN_FLIGHT = 32  # handler calls running at once
ECHO_MEMORY = 4096  # trace ids of recent deliveries, to recognise a handler's own logs
LEVELS = frozenset({"all", "trace", "debug", "info", "warn", "error"})
CALLER = "observability"


_LEVEL = f"log trigger 'level' must be one of {', '.join(sorted(LEVELS))}, got {{value!r}}"


@attrs.frozen(kw_only=True)
class LogTriggerConfig:
    """A ``log`` binding: ``{level?}``, any case; no config is ``{}`` (every level)."""

    RULES: ClassVar[inputs.Rules] = inputs.Rules(
        accepts="object_or_null", not_object="log trigger config must be an object"
    )
    level: str = inputs.field(
        default="all", wrong=_LEVEL, checks=[(lambda level: level.lower() in LEVELS, _LEVEL)]
    )


class LogTrigger:
    id = "log"
    description = "Receives each stored log record of the chosen level"

    def __init__(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        self.bindings: dict[Binding, str] = {}  # binding -> level
        self._in, self._out = trio.open_memory_channel[dict[str, Any]](QUEUE_CAPACITY)
        self._delivery_traces: OrderedDict[str, None] = OrderedDict()
        self.queued = 0
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self.echoes_suppressed = 0

    # --- EngineTriggerType ------------------------------------------------------------------

    def bind(self, binding: Binding) -> None:
        level = inputs.structure_config(binding.config, LogTriggerConfig).level
        self.bindings[binding] = level.lower()

    def unbind(self, binding: Binding) -> None:
        self.bindings.pop(binding, None)

    # --- from the observer, for each stored record -------------------------------------------

    def offer(self, record: dict[str, Any]) -> None:
        if not self.bindings:
            return
        trace_id = record.get("trace_id")
        if trace_id is not None and trace_id in self._delivery_traces:
            self.echoes_suppressed += 1
            return
        try:
            self._in.send_nowait(record)
        except trio.WouldBlock:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "log trigger: %d records waiting; %d not delivered so far",
                    QUEUE_CAPACITY,
                    self.dropped,
                )
        else:
            self.queued += 1

    # --- delivery -----------------------------------------------------------------------------

    async def run(self) -> None:
        current_span.set(None)  # each delivery starts a trace of its own
        slots = trio.CapacityLimiter(DELIVERIES_IN_FLIGHT)
        async with trio.open_nursery() as nursery:
            async for record in self._out:
                level = str(record.get("severity_text") or "").lower()
                for binding, wanted in list(self.bindings.items()):
                    if wanted == "all" or wanted == level:
                        token = object()  # the slot is released by the delivery task
                        await slots.acquire_on_behalf_of(token)
                        nursery.start_soon(self._deliver, binding, record, slots, token)

    async def _deliver(
        self,
        binding: Binding,
        record: dict[str, Any],
        slots: trio.CapacityLimiter,
        token: object,
    ) -> None:
        try:
            invocation = self.ctx.start(binding.function_id, record, caller=CALLER)
            if invocation is None:
                self.failed += 1
                log.info("log trigger %s: function %s not found", binding.id, binding.function_id)
                return
            if invocation.span is not None:
                self._remember(invocation.span.trace_id)
            try:
                await self.ctx.result(invocation)
            except InvocationError as exc:
                self.failed += 1
                log.info("log trigger %s -> %s failed: %s", binding.id, binding.function_id, exc)
            else:
                self.delivered += 1
        finally:
            slots.release_on_behalf_of(token)

    def _remember(self, trace_id: str) -> None:
        traces = self._delivery_traces
        traces[trace_id] = None
        if len(traces) > ECHO_MEMORY:
            traces.popitem(last=False)

    def stats(self) -> dict[str, Any]:
        return {
            "bindings": len(self.bindings),
            "waiting": self._out.statistics().current_buffer_used,
            "capacity": QUEUE_CAPACITY,
            "queued": self.queued,
            "delivered": self.delivered,
            "failed": self.failed,
            "dropped": self.dropped,
            "echoes_suppressed": self.echoes_suppressed,
        }
