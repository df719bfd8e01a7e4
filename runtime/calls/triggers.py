"""Trigger bindings: route each to its type's provider, park it, re-deliver it (spec §6).

A binding goes to the engine module providing its type (validated synchronously), or to
the first live worker providing the type (sent as ``registertrigger``), or is parked until
a provider appears. Failures reach the binding's owner as ``triggerregistrationresult``.
An engine module's trigger types come and go with the module (:meth:`Triggers.hosting`):
while it is down (crashed, being restarted) its bindings stay in the registry, parked, and
each incarnation gets every one of them bound again when it offers its types.
Everything here is synchronous: frames to other workers are posted to their bounded
outboxes without waiting, so a worker that stops reading cannot stall anyone else.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from iii_trio.runtime.calls.errors import TriggerConfigError
from iii_trio.runtime.calls.registry import Binding, EngineTriggerType, Registry
from iii_trio.runtime.wire import protocol

if TYPE_CHECKING:
    from iii_trio.runtime.calls.peer import Peer

log = logging.getLogger("iii_trio.triggers")


class Triggers:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def bind(self, binding: Binding) -> None:
        registry = self.registry
        previous = registry.bindings.get(binding.key)
        if previous is not None:
            self.unbind(previous)  # a repeated id on one connection replaces (§6.1)
        engine_type = registry.engine_types.get(binding.trigger_type)
        if engine_type is not None:
            try:
                engine_type.bind(binding)
            except TriggerConfigError as exc:
                self._report_failure(
                    binding, protocol.ErrorBody("trigger_registration_failed", str(exc))
                )
                return
            registry.bindings[binding.key] = binding
            return
        registry.bindings[binding.key] = binding
        self._deliver(binding)

    def unbind(self, binding: Binding) -> None:
        registry = self.registry
        if registry.bindings.get(binding.key) is not binding:
            return
        del registry.bindings[binding.key]
        engine_type = registry.engine_types.get(binding.trigger_type)
        if engine_type is not None:
            engine_type.unbind(binding)
        provider = binding.delivered_to
        if provider is not None:
            binding.delivered_to = None
            provider.post(
                protocol.UnregisterTrigger(id=binding.id, trigger_type=binding.trigger_type)
            )

    @contextmanager
    def hosting(self, trigger_types: Iterable[EngineTriggerType]) -> Iterator[None]:
        """Offer engine trigger types for the block's duration (a module incarnation while
        it runs, from the moment it is ready). Each type gets, before the block starts, every
        binding of its id the registry holds: those its predecessor had, and those made
        while no incarnation ran. A binding it refuses leaves the registry and is reported to
        its owner like any refusal. When the block ends the bindings stay, parked."""
        types = list(trigger_types)
        with self.registry.hosting((), types):
            for engine_type in types:
                self._rebind(engine_type)
            yield

    def _rebind(self, engine_type: EngineTriggerType) -> None:
        registry = self.registry
        for binding in list(registry.parked(engine_type.id)):
            try:
                engine_type.bind(binding)
                continue
            except TriggerConfigError as exc:
                reason = str(exc)
            except Exception as exc:  # a fault in the module's bind refuses only this binding
                log.exception("trigger %s: %s bind failed", binding.id, engine_type.id)
                reason = f"{engine_type.id} could not bind it: {exc}"
            if registry.bindings.get(binding.key) is binding:
                del registry.bindings[binding.key]
            self._report_failure(binding, protocol.ErrorBody("trigger_registration_failed", reason))

    def provider_added(self, type_id: str) -> None:
        """A worker registered ``type_id``: parked bindings go to the active provider."""
        for binding in self.registry.parked(type_id):
            self._deliver(binding)

    def provider_removed(self, conn: Peer, type_id: str) -> None:
        """``conn`` no longer provides ``type_id``: its bindings go to the next provider."""
        self.registry.remove_type_provider(conn, type_id)
        for binding in list(self.registry.delivered_to(conn)):
            if binding.trigger_type == type_id:
                binding.delivered_to = None
                self._deliver(binding)

    def provider_answered(self, conn: Peer, answer: protocol.TriggerRegistrationResult) -> None:
        if answer.error is None:
            return
        for binding in self.registry.delivered_to(conn):
            if binding.id == answer.id:
                # Parked again; not re-sent to the provider that refused it (§6.3.3).
                binding.delivered_to = None
                binding.refused_by.add(conn.worker_id)
                self._report_failure(binding, answer.error)

    def _deliver(self, binding: Binding) -> None:
        entry = self.registry.worker_types.get(binding.trigger_type)
        provider = entry.active(excluding=binding.refused_by) if entry is not None else None
        if provider is None:
            return  # parked
        binding.delivered_to = provider
        provider.post(binding.register_frame())

    def _report_failure(self, binding: Binding, error: protocol.ErrorBody) -> None:
        log.info(
            "trigger %s (%s -> %s) failed: %s",
            binding.id,
            binding.trigger_type,
            binding.function_id,
            error.message,
        )
        if binding.owner is not None:
            binding.owner.post(
                protocol.TriggerRegistrationResult(
                    id=binding.id,
                    trigger_type=binding.trigger_type,
                    function_id=binding.function_id,
                    error=error,
                )
            )
