"""Routing of calls: resolve the function, pick a provider, spawn the invocation actor.

Used for worker calls (``invokefunction`` frames) and for engine-originated calls (trigger
delivery, module calls). Every routed call is a live :class:`Invocation`, listed by
``engine::invocations::list`` (D12): an actor under the ``invocations`` supervisor, or, when
its frame went to the target at once, a call without a task whose deadline the router's
:class:`Deadlines` timer watches (see :mod:`iii_trio.runtime.calls.invocation`). A call a module
has accepted but not routed yet (an HTTP request waiting for admission) is listed too, as a
:class:`QueuedCall` that its invocation replaces under the same id.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from iii_trio.runtime.calls.deadlines import Deadlines
from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.calls.invocation import Invocation, Outcome, QueuedCall
from iii_trio.runtime.clock import now_ms
from iii_trio.runtime.wire import protocol

if TYPE_CHECKING:
    from iii_trio.actors import Supervisor
    from iii_trio.runtime.calls.peer import Peer
    from iii_trio.runtime.calls.registry import Registry
    from iii_trio.runtime.calls.tracing import Observer

log = logging.getLogger("iii_trio.router")


def not_found(function_id: str) -> protocol.ErrorBody:
    return protocol.ErrorBody("function_not_found", f"Function {function_id} not found")


class Router:
    def __init__(self, registry: Registry, default_timeout_ms: int) -> None:
        self.registry = registry
        self.default_timeout_ms = default_timeout_ms
        self.live: dict[str, Invocation] = {}
        self.queued: dict[str, QueuedCall] = {}  # accepted by a module, not routed yet
        self._idle: trio.Event | None = None
        self.supervisor: Supervisor | None = None
        # Run by the invocations supervisor (a child of it): the deadlines of calls
        # without a task.
        self.deadlines = Deadlines()
        # The observability module's hooks (engine.observer); None: nothing is recorded.
        self.observer: Observer | None = None

    def start(
        self,
        function_id: str,
        data: Any,
        *,
        invocation_id: str | None = None,
        caller: Peer | None = None,
        caller_module: str | None = None,
        reply: bool,
        timeout_ms: int | None = None,
        traceparent: str | None = None,
        baggage: str | None = None,
        metadata: Any = None,
        deadline: float | None = None,
        started_at_ms: int | None = None,
    ) -> Invocation | None:
        """Spawn the invocation actor for one call; None when the function is unknown.

        ``deadline`` (trio time) and ``started_at_ms`` (Unix ms) let a call that was queued
        keep the start and deadline it had when accepted; ``timeout_ms`` is then its whole
        timeout from that start."""
        target = local = None
        local = self.registry.engine_functions.get(function_id)
        if local is None:
            entry = self.registry.functions.get(function_id)
            if entry is None:
                return None
            target = entry.pick()
        if timeout_ms is None:
            timeout_ms = self.default_timeout_ms
        invocation = Invocation(
            invocation_id=invocation_id or protocol.new_uuid(),
            function_id=function_id,
            data=data,
            deadline=trio.current_time() + timeout_ms / 1000 if deadline is None else deadline,
            timeout_ms=timeout_ms,
            caller=caller,
            caller_module=caller_module,
            reply=reply,
            target=target,
            local=local,
            traceparent=traceparent,
            baggage=baggage,
            metadata=metadata,
            started_at_ms=started_at_ms,
            on_done=self._finished,
            spawn=self._spawn,
        )
        self.queued.pop(invocation.id, None)  # routed now: the invocation's row replaces it
        self.live[invocation.id] = invocation
        if target is not None:
            target.assigned.add(invocation)
        if caller is not None and reply:
            caller.outgoing.add(invocation)
        if self.observer is not None:  # before the frame is built: it carries the span
            self.observer.invocation_started(invocation)
        if invocation.try_send_now():
            self.deadlines.add(invocation)
        else:
            self._spawn(invocation)
        return invocation

    def _spawn(self, invocation: Invocation) -> None:
        supervisor = self.supervisor
        assert supervisor is not None, "the invocations supervisor is not running"
        supervisor.spawn(invocation)

    async def wait_idle(self) -> None:
        """Until no invocation is live (graceful drain)."""
        while self.live:
            self._idle = trio.Event()
            await self._idle.wait()

    def _finished(self, invocation: Invocation) -> None:
        self.deadlines.discard(invocation)
        if invocation.span is not None and self.observer is not None:
            self.observer.invocation_finished(invocation)
        if self.live.get(invocation.id) is invocation:
            del self.live[invocation.id]
            if not self.live and self._idle is not None:
                self._idle.set()
        if invocation.target is not None:
            invocation.target.assigned.discard(invocation)
        if invocation.caller is not None:
            invocation.caller.outgoing.discard(invocation)

    async def call(
        self,
        function_id: str,
        data: Any,
        *,
        caller_module: str,
        timeout_ms: int | None = None,
        abandon_on_cancel: bool = False,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> Any:
        """An engine-originated call whose result the engine awaits (trigger delivery,
        condition functions). Raises :class:`InvocationError` with the wire error.
        ``traceparent`` / ``baggage``: the trace the call continues (a queued job's).
        ``abandon_on_cancel``: if the wait is cancelled, abandon the invocation too (an
        engine function stops, a worker's late result is dropped) instead of letting it
        run to its deadline with nobody waiting."""
        invocation = self.start(
            function_id,
            data,
            caller_module=caller_module,
            reply=False,
            timeout_ms=timeout_ms,
            traceparent=traceparent,
            baggage=baggage,
        )
        if invocation is None:
            raise InvocationError(**_fields(not_found(function_id)))
        try:
            return await self.result(invocation)
        except trio.Cancelled:
            if abandon_on_cancel:
                invocation.abandon()
            raise

    @staticmethod
    async def result(invocation: Invocation) -> Any:
        """Wait for a started invocation (again, if an earlier wait was cancelled); its result,
        or :class:`InvocationError` with its wire error."""
        await invocation.finished.wait()
        outcome = invocation.outcome or Outcome()
        if outcome.error is not None:
            raise InvocationError(**_fields(outcome.error))
        return outcome.result

    def fire(self, function_id: str, data: Any, *, caller_module: str) -> None:
        """An engine-originated call nobody waits for (errors are logged)."""
        if self.start(function_id, data, caller_module=caller_module, reply=False) is None:
            log.info("%s: cannot deliver to %s: function not found", caller_module, function_id)

    def queue(
        self,
        function_id: str,
        *,
        caller_module: str,
        timeout_ms: int,
        started_at_ms: int | None = None,
    ) -> QueuedCall:
        """List a call the module has accepted but cannot route yet; :meth:`start` with its
        id routes it, :meth:`unqueue` drops it."""
        started = now_ms() if started_at_ms is None else started_at_ms
        call = QueuedCall(protocol.new_uuid(), function_id, caller_module, started, timeout_ms)
        self.queued[call.id] = call
        return call

    def unqueue(self, call: QueuedCall) -> None:
        if self.queued.get(call.id) is call:
            del self.queued[call.id]

    def rows(self, now_ms: int) -> list[dict[str, Any]]:
        rows = [call.row(now_ms) for call in self.queued.values()]
        return rows + [invocation.row(now_ms) for invocation in self.live.values()]

    def row(self, call_id: str, now_ms: int) -> dict[str, Any] | None:
        """One live or queued call's row; None when there is none with that id."""
        found: Invocation | QueuedCall | None = self.live.get(call_id)
        if found is None:
            found = self.queued.get(call_id)
        return found.row(now_ms) if found is not None else None


def _fields(error: protocol.ErrorBody) -> dict[str, str]:
    return {"code": error.code, "message": error.message}
