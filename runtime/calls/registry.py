"""Functions with their replicas, trigger types and trigger bindings (D2, spec §4.3, §6).

Everything a connection registers is keyed by that connection, so removing one
connection's entries can never remove another's (compare-and-delete by owner). The
registry is a plain data structure mutated from the connection that owns the change;
sending frames to other workers is left to the caller (the engine), which gets back what to
send.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from iii_trio.runtime.calls.invocation import EngineFunction
from iii_trio.runtime.wire import protocol

if TYPE_CHECKING:
    from iii_trio.runtime.calls.peer import Peer


class EngineTriggerType(Protocol):
    """A trigger type provided by an engine module. ``bind`` validates and activates a
    binding (raising :class:`~iii_trio.runtime.calls.errors.TriggerConfigError` to refuse it);
    ``unbind`` deactivates it. Both are synchronous so bindings apply in frame order."""

    id: str
    description: str

    def bind(self, binding: Binding) -> None: ...

    def unbind(self, binding: Binding) -> None: ...


@attrs.define(eq=False)
class Binding:
    owner: Peer | None  # None for bindings made by the engine itself
    id: str
    trigger_type: str
    function_id: str
    config: Any
    metadata: Any = None
    delivered_to: Peer | None = None  # the worker provider holding it
    refused_by: set[str] = attrs.field(factory=set)  # worker ids that refused it

    @property
    def key(self) -> tuple[str, str]:
        return (self.owner.worker_id if self.owner is not None else "", self.id)

    def register_frame(self) -> protocol.RegisterTrigger:
        return protocol.RegisterTrigger(
            id=self.id,
            trigger_type=self.trigger_type,
            function_id=self.function_id,
            config=self.config,
            metadata=self.metadata,
        )

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "trigger_type": self.trigger_type,
            "function_id": self.function_id,
            "config": self.config,
            "metadata": self.metadata,
        }


@attrs.define(eq=False)
class FunctionEntry:
    """One function id and the live connections providing it, in registration order."""

    id: str
    providers: dict[Peer, protocol.RegisterFunction] = attrs.field(factory=dict)
    _turn: itertools.count[int] = attrs.field(factory=itertools.count)

    def pick(self) -> Peer:
        """The provider with the fewest invocations assigned; ties go round-robin."""
        providers = list(self.providers)
        if len(providers) == 1:
            return providers[0]
        start = next(self._turn) % len(providers)
        rotated = providers[start:] + providers[:start]
        return min(rotated, key=lambda conn: len(conn.assigned))

    def row(self) -> dict[str, Any]:
        reg = next(iter(self.providers.values()))
        return {
            "function_id": self.id,
            "description": reg.description,
            "request_format": reg.request_format,
            "response_format": reg.response_format,
            "metadata": reg.metadata,
        }


@attrs.define(eq=False)
class WorkerTriggerType:
    id: str
    # Live providers in registration order; the first one receives the bindings (§6.3.5).
    providers: dict[Peer, protocol.RegisterTriggerType] = attrs.field(factory=dict)

    def active(self, excluding: set[str]) -> Peer | None:
        """The earliest live provider, skipping those that refused the binding."""
        return next((c for c in self.providers if c.worker_id not in excluding), None)


class Registry:
    def __init__(self) -> None:
        self.functions: dict[str, FunctionEntry] = {}
        self.engine_functions: dict[str, EngineFunction] = {}
        self.engine_types: dict[str, EngineTriggerType] = {}
        self.worker_types: dict[str, WorkerTriggerType] = {}
        self.bindings: dict[tuple[str, str], Binding] = {}
        self.version = 0  # bumped whenever the set of function ids changes

    # --- functions -------------------------------------------------------------------------

    def add_engine_function(self, function: EngineFunction) -> None:
        self.engine_functions[function.id] = function
        self.version += 1

    def remove_engine_function(self, function_id: str) -> None:
        if self.engine_functions.pop(function_id, None) is not None:
            self.version += 1

    @contextmanager
    def hosting(
        self, functions: Iterable[EngineFunction], trigger_types: Iterable[EngineTriggerType]
    ) -> Iterator[None]:
        """Register an engine part's functions and trigger types for the block's duration
        (a module while it runs: also when it crashes, and again when it is restarted)."""
        functions = list(functions)
        types = list(trigger_types)
        for function in functions:
            self.add_engine_function(function)
        for trigger_type in types:
            self.engine_types[trigger_type.id] = trigger_type
        try:
            yield
        finally:
            for function in functions:
                if self.engine_functions.get(function.id) is function:
                    self.remove_engine_function(function.id)
            for trigger_type in types:
                if self.engine_types.get(trigger_type.id) is trigger_type:
                    del self.engine_types[trigger_type.id]

    def add_provider(self, conn: Peer, reg: protocol.RegisterFunction) -> None:
        entry = self.functions.get(reg.id)
        if entry is None:
            entry = self.functions[reg.id] = FunctionEntry(reg.id)
            self.version += 1
        entry.providers[conn] = reg

    def remove_provider(self, conn: Peer, function_id: str) -> bool:
        entry = self.functions.get(function_id)
        if entry is None or entry.providers.pop(conn, None) is None:
            return False
        if not entry.providers:
            del self.functions[function_id]
            self.version += 1
        return True

    def function_rows(self, *, include_internal: bool) -> list[dict[str, Any]]:
        rows = [entry.row() for entry in self.functions.values()]
        seen = set(self.functions)
        for function in self.engine_functions.values():
            if function.id in seen:
                continue
            if function.id.startswith("engine::") and not include_internal:
                continue
            rows.append(
                {
                    "function_id": function.id,
                    "description": function.description,
                    # null keeps P4's list_functions() working (spec §5.2).
                    "request_format": None,
                    "response_format": None,
                    "metadata": function.metadata,
                }
            )
        if not include_internal:
            rows = [row for row in rows if not row["function_id"].startswith("engine::")]
        return rows

    # --- trigger types ---------------------------------------------------------------------

    def is_engine_type(self, type_id: str) -> bool:
        return type_id in self.engine_types

    def add_type_provider(self, conn: Peer, reg: protocol.RegisterTriggerType) -> WorkerTriggerType:
        entry = self.worker_types.get(reg.id)
        if entry is None:
            entry = self.worker_types[reg.id] = WorkerTriggerType(reg.id)
        entry.providers[conn] = reg
        return entry

    def remove_type_provider(self, conn: Peer, type_id: str) -> bool:
        entry = self.worker_types.get(type_id)
        if entry is None or entry.providers.pop(conn, None) is None:
            return False
        if not entry.providers:
            del self.worker_types[type_id]
        return True

    def parked(self, type_id: str) -> Iterator[Binding]:
        for binding in list(self.bindings.values()):
            if binding.trigger_type == type_id and binding.delivered_to is None:
                yield binding

    def delivered_to(self, conn: Peer) -> Iterator[Binding]:
        for binding in list(self.bindings.values()):
            if binding.delivered_to is conn:
                yield binding

    def owned_by(self, conn: Peer) -> Iterator[Binding]:
        for binding in list(self.bindings.values()):
            if binding.owner is conn:
                yield binding

    def trigger_type_rows(self) -> list[dict[str, Any]]:
        rows = [
            {
                "id": t.id,
                "description": t.description,
                "trigger_request_format": None,
                "call_request_format": None,
            }
            for t in self.engine_types.values()
        ]
        for entry in self.worker_types.values():
            reg = next(iter(entry.providers.values()))
            rows.append(
                {
                    "id": entry.id,
                    "description": reg.description,
                    "trigger_request_format": reg.trigger_request_format,
                    "call_request_format": reg.call_request_format,
                }
            )
        return rows

    def binding_rows(self, *, include_internal: bool) -> list[dict[str, Any]]:
        return [
            b.row()
            for b in self.bindings.values()
            if include_internal or not b.function_id.startswith("engine::")
        ]
