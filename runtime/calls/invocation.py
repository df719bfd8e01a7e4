"""One live invocation actor per routed call (spec/protocol.md §4, D3, D4, D5).

An :class:`Invocation` owns a call from the moment it is routed until its outcome is
delivered: it waits for an in-flight slot on its target (state ``queued``), sends the frame
(state ``running``), waits for the result, and answers the caller, all inside the call's
engine-side deadline. Anything that settles the call from outside (the target's result, the
target disconnecting, the caller going away) calls :meth:`Invocation.settle` or
:meth:`Invocation.abandon`, which wake the actor by cancelling its wait.

A call whose frame went to its target the moment it was routed (a free slot, room in the
outbox: the usual case) gets no task at all: its deadline is watched by the router's one
:class:`~iii_trio.runtime.calls.deadlines.Deadlines` timer, and whatever settles it answers the
caller and cleans up right there. It is spawned as an actor only if its answer has to wait
for room in the caller's outbox. Spawning a task per call only to hold its deadline cost
about a fifth of the engine's CPU per routed call (docs/performance.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from iii_trio.actors import Actor, MailboxClosed
from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.calls.tracing import Span, current_span
from iii_trio.runtime.clock import now_ms
from iii_trio.runtime.wire import protocol
from iii_trio.runtime.wire.websocket import text_frame

if TYPE_CHECKING:
    from iii_trio.runtime.calls.peer import Peer

log = logging.getLogger("iii_trio.invocation")

STOPPED = protocol.ErrorBody("invocation_stopped", "Invocation stopped")
# How long a result may wait for room in a caller's full outbox. A caller that reads
# nothing for this long loses the result, so invocations cannot pile up behind it.
DELIVERY_GRACE_SECONDS = 10.0


@attrs.frozen
class CallContext:
    """What an engine function learns about its call."""

    invocation_id: str
    function_id: str
    caller: Peer | None  # None for engine-originated calls
    caller_module: str | None = None
    metadata: Any = None
    baggage: str | None = None  # the call's W3C baggage header, as the caller sent it
    #: the trace context the call runs in: the engine's span of it when observed, else the
    #: caller's ``traceparent`` as sent (what a call made on its behalf later continues)
    traceparent: str | None = None


class LocalHandler(Protocol):
    def __call__(self, data: Any, ctx: CallContext, /) -> Awaitable[Any]: ...


@attrs.frozen
class EngineFunction:
    """A function executed in-process (``engine::*``, ``state::*``, ...)."""

    id: str
    handler: LocalHandler
    description: str | None = None
    metadata: Any = None


@attrs.define(eq=False)
class Outcome:
    result: Any = None
    error: protocol.ErrorBody | None = None


class Invocation(Actor):
    kind = "invocation"

    def __init__(
        self,
        *,
        invocation_id: str,
        function_id: str,
        data: Any,
        deadline: float,
        timeout_ms: int,
        caller: Peer | None,
        caller_module: str | None = None,
        reply: bool,
        target: Peer | None = None,
        local: EngineFunction | None = None,
        traceparent: str | None = None,
        baggage: str | None = None,
        metadata: Any = None,
        started_at_ms: int | None = None,
        on_done: Callable[[Invocation], None],
        spawn: Callable[[Invocation], None],
    ) -> None:
        super().__init__(function_id)
        self.id = invocation_id
        self.function_id = function_id
        self.data = data
        self.deadline = deadline
        self.timeout_ms = timeout_ms
        self.caller = caller
        self.caller_module = caller_module
        self.reply = reply
        self.target = target
        self.local = local
        self.traceparent = traceparent
        self.baggage = baggage
        self.metadata = metadata
        self.span: Span | None = None  # set by the observer, when there is one
        self.state = "queued"
        self.started_at_ms = now_ms() if started_at_ms is None else started_at_ms
        self.outcome: Outcome | None = None
        self.finished = trio.Event()
        self._on_done = on_done
        self._spawn = spawn
        self._wait_scope: trio.CancelScope | None = None
        self._armed = False  # sent at once, no task: settling it finishes it (see above)
        self._abandoned = False
        self._holds_slot = False
        self._sent = False
        self._delivered = False

    # --- settled from outside -----------------------------------------------------------

    def settle(self, outcome: Outcome) -> None:
        """Record the outcome (the first one wins) and wake the actor."""
        if self.outcome is None:
            self.outcome = outcome
            if self._wait_scope is not None:
                self._wait_scope.cancel()
            elif self._armed:
                self._armed = False
                self._finish_without_task()

    def expire(self) -> None:
        """The router's deadline timer: this call (one without a task) is out of time."""
        self.settle(self._timeout_outcome())

    def complete(self, outcome: Outcome) -> None:
        """The target answered: settle and, when the caller's outbox has room, answer it
        right here, in the target's reader, so the reply does not wait for this actor."""
        if self.outcome is not None:
            return
        caller = self.caller
        if self.reply and caller is not None and not self._abandoned:
            try:
                self._delivered = caller.try_deliver(self._result_frame(outcome))
            except MailboxClosed:
                self._delivered = True  # the caller is gone: nobody to answer
        self.settle(outcome)

    def try_send_now(self) -> bool:
        """Called as the call is routed: when the target has a free slot and outbox room,
        send at once, so the frame does not wait for this actor to be scheduled.

        True when it was sent: then the call needs no task, only its deadline watched (the
        caller of this method arranges that); False: spawn it as an actor."""
        target = self.target
        if target is None:
            return False
        try:
            target.slots.acquire_nowait()
        except trio.WouldBlock:
            return False
        self._holds_slot = True
        self.state = "running"
        target.pending[self.id] = self
        try:
            self._sent = target.try_deliver(self._invoke_frame())
        except MailboxClosed:
            self.settle(Outcome(error=STOPPED))
            return False
        self._armed = self._sent
        return self._sent

    def abandon(self) -> None:
        """The caller went away: stop waiting and deliver nothing (D4.2)."""
        self._abandoned = True
        self.settle(Outcome(error=STOPPED))

    # --- the actor -----------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            # One scope for both ends of the wait: the deadline, or settle() cancelling it.
            # Without an outcome once it is left, the deadline ended it.
            with trio.CancelScope(deadline=self.deadline) as self._wait_scope:
                if self.outcome is None:
                    if self.local is not None:
                        await self._run_local(self.local)
                    elif self.target is not None:
                        await self._run_remote(self.target)
                    else:
                        raise AssertionError("an invocation needs a target")
            if self.outcome is None:
                self.outcome = self._timeout_outcome()
            if not self._abandoned:
                await self._deliver(self.outcome)
        finally:
            self._done()  # releases the target also when settled before _run_remote ran

    def _finish_without_task(self) -> None:
        """Settled while armed (no task): answer the caller now if its outbox has room,
        otherwise become an actor that waits for room (:meth:`run` then only delivers)."""
        assert self.outcome is not None
        caller = self.caller
        if self.reply and caller is not None and not self._abandoned and not self._delivered:
            try:
                self._delivered = caller.try_deliver(self._result_frame(self.outcome))
            except MailboxClosed:
                self._delivered = True  # the caller is gone: nobody to answer
            if not self._delivered:
                self._spawn(self)
                return
        self._log_failure(self.outcome)
        self._done()

    def _done(self) -> None:
        self._release_target()
        self._on_done(self)
        self.finished.set()

    def _timeout_outcome(self) -> Outcome:
        message = f"invocation of {self.function_id} timed out after {self.timeout_ms} ms"
        return Outcome(error=protocol.ErrorBody("timeout", message))

    async def _run_local(self, function: EngineFunction) -> None:
        self.state = "running"
        ctx = CallContext(
            self.id,
            self.function_id,
            self.caller,
            self.caller_module,
            self.metadata,
            self.baggage,
            self.traceparent,
        )
        if self.span is not None:
            current_span.set(self.span)  # calls this function makes are its children
        try:
            result = await function.handler(self.data, ctx)
        except InvocationError as exc:
            self.settle(Outcome(error=exc.body))
        except Exception as exc:
            log.exception("engine function %s failed", self.function_id)
            self.settle(
                Outcome(
                    error=protocol.ErrorBody("invocation_failed", f"{type(exc).__name__}: {exc}")
                )
            )
        else:
            self.settle(Outcome(result=result))

    async def _run_remote(self, target: Peer) -> None:
        try:
            if not self._holds_slot:
                # D5: the slot wait counts against the deadline; state "queued" meanwhile.
                await target.slots.acquire()
                self._holds_slot = True
                if self.outcome is not None:
                    return
                self.state = "running"
                target.pending[self.id] = self
            if not self._sent:
                try:
                    await target.deliver(self._invoke_frame())
                except MailboxClosed:
                    self.settle(Outcome(error=STOPPED))
                    return
                self._sent = True
            await trio.sleep_forever()
        finally:
            self._release_target()

    def _release_target(self) -> None:
        target = self.target
        if target is None:
            return
        if self._holds_slot:
            target.slots.release()
            self._holds_slot = False
        if target.pending.get(self.id) is self:
            del target.pending[self.id]

    def _invoke_frame(self) -> bytes:
        return text_frame(
            protocol.encode_invoke(
                self.id,
                self.function_id,
                self.data,
                traceparent=self.traceparent,
                baggage=self.baggage,
                metadata=self.metadata,
            )
        )

    def _result_frame(self, outcome: Outcome) -> bytes:
        return text_frame(
            protocol.encode_result(
                self.id, self.function_id, result=outcome.result, error=outcome.error
            )
        )

    def _log_failure(self, outcome: Outcome) -> None:
        if outcome.error is not None and not self.reply:
            log.info("call of %s failed: %s", self.function_id, outcome.error.message)

    async def _deliver(self, outcome: Outcome) -> None:
        self._log_failure(outcome)
        caller = self.caller
        if not self.reply or caller is None or self._delivered:
            return
        with trio.move_on_after(DELIVERY_GRACE_SECONDS) as grace:
            try:
                await caller.deliver(self._result_frame(outcome))
            except MailboxClosed:
                pass  # the caller disconnected meanwhile: nobody to tell
        if grace.cancelled_caught:
            log.warning("%s is not reading: result of %s dropped", caller, self.id)

    # --- introspection (D12) ---------------------------------------------------------------

    def row(self, now_ms: int) -> dict[str, Any]:
        if self.caller is not None:
            caller = {"kind": "worker", "id": self.caller.worker_id}
        else:
            caller = module_caller(self.caller_module)
        target = self.target.worker_id if self.target is not None else None
        return call_row(
            self.id,
            self.function_id,
            caller,
            target,
            self.started_at_ms,
            self.timeout_ms,
            self.state,
            now_ms,
        )


@attrs.define(eq=False)
class QueuedCall:
    """A call a module has accepted but not routed yet: an HTTP request waiting for one of
    the module's execution slots (D5), or for its condition. Listed like an invocation, in
    state ``queued``, until :meth:`Router.start` routes it under the same id."""

    id: str
    function_id: str
    caller_module: str
    started_at_ms: int
    timeout_ms: int

    def row(self, now_ms: int) -> dict[str, Any]:
        caller = module_caller(self.caller_module)
        return call_row(
            self.id,
            self.function_id,
            caller,
            None,
            self.started_at_ms,
            self.timeout_ms,
            "queued",
            now_ms,
        )


def module_caller(name: str | None) -> dict[str, Any]:
    return {"kind": "module", "id": name or "engine"}


def call_row(
    call_id: str,
    function_id: str,
    caller: dict[str, Any],
    target_worker: str | None,
    started_at_ms: int,
    timeout_ms: int,
    state: str,
    now_ms: int,
) -> dict[str, Any]:
    """One row of ``engine::invocations::list`` (spec/protocol.md §5.6), one shape for all."""
    return {
        "id": call_id,
        "function_id": function_id,
        "caller": caller,
        "target_worker": target_worker,
        "started_at": started_at_ms,
        "age_ms": max(0, now_ms - started_at_ms),
        "deadline_ms": started_at_ms + timeout_ms,
        "state": state,
    }
