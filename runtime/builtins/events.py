"""The engine's own event trigger types and what fires them (spec §5.7).

``engine::workers-available`` fires when a worker connects, disconnects or updates its
metadata; ``engine::functions-available`` fires at most once per
:data:`FUNCTIONS_AVAILABLE_DELAY` after the set of function ids changed (changes within the
window are coalesced; the spec asks for within 5 s). The coalescing loop is the body of
the ``registry`` node of the supervision tree.
"""

from __future__ import annotations

from typing import Any

import trio

from iii_trio.runtime.calls.registry import Binding, Registry
from iii_trio.runtime.calls.router import Router

FUNCTIONS_AVAILABLE_DELAY = 0.5

FUNCTIONS_AVAILABLE = "engine::functions-available"
WORKERS_AVAILABLE = "engine::workers-available"
#: The engine's own trigger types: workers may never provide them.
TRIGGER_TYPES = (FUNCTIONS_AVAILABLE, WORKERS_AVAILABLE)


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


class EngineEvents:
    """Fires the two event trigger types; the dispatcher reports to it (``WorkerEvents``)."""

    def __init__(self, registry: Registry, router: Router) -> None:
        self.registry = registry
        self.router = router
        self.functions_available = EventTriggerType(
            FUNCTIONS_AVAILABLE, "Fires when the set of functions changes"
        )
        self.workers_available = EventTriggerType(
            WORKERS_AVAILABLE, "Fires when a worker connects, disconnects or updates"
        )
        self._functions_changed = trio.Event()

    def worker_event(self, event: str, worker_id: str) -> None:
        self.fire(self.workers_available, {"event": event, "worker_id": worker_id})

    def functions_changed(self) -> None:
        self._functions_changed.set()

    def fire(self, trigger_type: EventTriggerType, payload: Any) -> None:
        for binding in list(trigger_type.bindings):
            self.router.fire(binding.function_id, payload, caller_module="worker")

    async def notify_functions_available(self) -> None:
        """Run forever: fire ``engine::functions-available`` after changes, coalesced."""
        seen = self.registry.version
        while True:
            await self._functions_changed.wait()
            self._functions_changed = trio.Event()
            await trio.sleep(FUNCTIONS_AVAILABLE_DELAY)
            if self.registry.version == seen:
                continue
            seen = self.registry.version
            if self.functions_available.bindings:
                payload = {
                    "event": "functions_changed",
                    "functions": self.registry.function_rows(include_internal=False),
                }
                self.fire(self.functions_available, payload)
