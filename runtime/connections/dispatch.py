"""What the engine does with each frame a worker sends (spec §2.1, §3.5, §3.7, §4).

:meth:`Dispatcher.handle_frame` runs in the connection's reader task, so a connection's
frames are applied in order. It never waits on another worker: calls become invocation
actors, and frames to other workers go through their bounded outboxes.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.calls.invocation import Outcome
from iii_trio.runtime.calls.registry import Binding, Registry
from iii_trio.runtime.calls.router import Router, not_found
from iii_trio.runtime.calls.triggers import Triggers
from iii_trio.runtime.connections import quotas as quota
from iii_trio.runtime.connections.channels import ChannelTable
from iii_trio.runtime.wire import protocol
from iii_trio.runtime.wire.websocket import text_frame

if TYPE_CHECKING:
    from iii_trio.runtime.connections.connection import WorkerConnection

log = logging.getLogger("iii_trio.dispatch")


class InvokeAction(Protocol):
    """A module's handling of an ``invokefunction`` frame with ``action: {type: ...}``
    (spec §4.5; the queue module offers ``enqueue``). Its return value is the caller's
    result; an :class:`InvocationError` is its error."""

    def __call__(
        self, function_id: str, data: Any, action: protocol.Action, /
    ) -> Awaitable[Any]: ...


class WorkerEvents(Protocol):
    """Where the dispatcher reports changes the engine's event triggers fire on."""

    def worker_event(self, event: str, worker_id: str) -> None: ...

    def functions_changed(self) -> None: ...


class Dispatcher:
    """Applies each worker's frames and owns the table of live connections.

    ``reserved_types`` are the trigger types only the engine's modules may provide (declared
    by the modules, loaded or not); ``missing_actions`` answers an invoke action no running
    module offers (``{"enqueue": "QueueModule not loaded"}``)."""

    def __init__(
        self,
        registry: Registry,
        router: Router,
        triggers: Triggers,
        channels: ChannelTable,
        events: WorkerEvents,
        *,
        reserved_types: frozenset[str] = frozenset(),
        missing_actions: Mapping[str, str] | None = None,
        quotas: quota.WorkerQuotas | None = None,
    ) -> None:
        self.registry = registry
        self.router = router
        self.triggers = triggers
        self.channels = channels
        self.events = events
        self.reserved_types = reserved_types
        self.missing_actions = dict(missing_actions or {})
        self.quotas = quotas or quota.WorkerQuotas()
        self.connections: dict[str, WorkerConnection] = {}
        # Invoke actions offered by the running modules, by action type.
        self.actions: dict[str, InvokeAction] = {}

    # --- connections -------------------------------------------------------------------------

    def connected(self, conn: WorkerConnection) -> None:
        """A new connection, before its hello frame: from now on it can be reattached to."""
        self.connections[conn.worker_id] = conn

    def worker_event(self, event: str, worker_id: str) -> None:
        if self.router.observer is not None:
            self.router.observer.worker_event(event)
        self.events.worker_event(event, worker_id)

    def telemetry(self, conn: WorkerConnection | None, frame: protocol.Telemetry) -> None:
        """Ingested by the observability module when it runs, otherwise dropped (D1)."""
        observer = self.router.observer
        if observer is not None:
            observer.telemetry(conn, frame)

    async def handle_frame(self, conn: WorkerConnection, frame: str | bytes) -> None:
        try:
            message = protocol.decode(frame)
        except protocol.UnknownMessageType as exc:
            log.debug("%s: %s ignored", conn, exc)
            return
        except protocol.FrameRejected as exc:
            log.warning("%s: frame rejected: %s", conn, exc.reason)
            return
        # Hot path first: calls and results.
        if type(message) is protocol.InvokeFunction:
            await self._invoke(conn, message)
        elif type(message) is protocol.InvocationResult:
            self._result(conn, message)
        elif isinstance(message, protocol.Telemetry):
            self.telemetry(conn, message)
        else:
            version = self.registry.version
            await self._control(conn, message)
            if self.registry.version != version:
                self.events.functions_changed()

    # --- calls -------------------------------------------------------------------------------

    async def _invoke(self, conn: WorkerConnection, msg: protocol.InvokeFunction) -> None:
        data = msg.data
        if isinstance(data, dict):
            data["_caller_worker_id"] = conn.worker_id  # spec §4.4, overwrites any value
        action = msg.action
        void = msg.invocation_id is None or (action is not None and action.type == "void")
        if action is not None and (
            action.type in self.actions or action.type in self.missing_actions
        ):
            await self._act(conn, msg, action)
            return
        invocation = self.router.start(
            msg.function_id,
            data,
            invocation_id=None if void else msg.invocation_id,
            caller=conn,
            reply=not void,
            traceparent=msg.traceparent,
            baggage=msg.baggage,
            metadata=msg.metadata,
        )
        if invocation is None:
            if void:
                log.info("%s: void call of unknown function %s", conn, msg.function_id)
            else:
                assert msg.invocation_id is not None
                await self.reply(
                    conn, msg.invocation_id, msg.function_id, error=not_found(msg.function_id)
                )
        if msg.function_id == "engine::workers::register":
            conn.session.mark_listed()

    async def _act(
        self, conn: WorkerConnection, msg: protocol.InvokeFunction, action: protocol.Action
    ) -> None:
        """An invoke action (``enqueue``): handed to the module offering it, whose answer
        (a receipt or an error) goes back as the call's result."""
        result: Any = None
        error: protocol.ErrorBody | None = None
        handler = self.actions.get(action.type)
        if handler is None:
            error = protocol.ErrorBody(f"{action.type}_error", self.missing_actions[action.type])
        else:
            if self.router.observer is not None:
                self.router.observer.call_deferred()
            try:
                result = await handler(msg.function_id, msg.data, action)
            except InvocationError as exc:
                error = exc.body
        if msg.invocation_id is not None:
            await self.reply(conn, msg.invocation_id, msg.function_id, result=result, error=error)

    def _result(self, conn: WorkerConnection, msg: protocol.InvocationResult) -> None:
        invocation = conn.pending.get(msg.invocation_id)
        if invocation is None:
            log.debug("%s: result for unknown invocation %s dropped", conn, msg.invocation_id)
            return
        invocation.complete(Outcome(result=msg.result, error=msg.error))

    async def reply(
        self,
        conn: WorkerConnection,
        invocation_id: str,
        function_id: str,
        *,
        result: Any = None,
        error: protocol.ErrorBody | None = None,
    ) -> None:
        frame = protocol.encode_result(invocation_id, function_id, result=result, error=error)
        try:
            await conn.deliver(text_frame(frame))
        except Exception:  # MailboxClosed: the caller is gone
            log.debug("%s: reply to %s dropped", conn, invocation_id)

    # --- registrations -----------------------------------------------------------------------

    async def _control(self, conn: WorkerConnection, message: protocol.Message) -> None:
        registry = self.registry
        match message:
            case protocol.RegisterFunction():
                if message.invocation is not None:
                    log.info(
                        "%s: HTTP-invoked function %s ignored (HttpFunctionsModule not loaded)",
                        conn,
                        message.id,
                    )
                    return
                refused = quota.function_refusal(
                    self.quotas, *conn.session.holds("function", message.id)
                )
                if refused is not None:
                    quota.warn_once(conn.session.quota_warned, conn, refused, "functions")
                    return
                registry.add_provider(conn, message)
                conn.session.provide_function(message.id)
            case protocol.UnregisterFunction():
                if registry.remove_provider(conn, message.id):
                    conn.session.withdraw_function(message.id)
            case protocol.RegisterTriggerType():
                if message.id in self.reserved_types:
                    log.warning("%s: cannot provide engine trigger type %r", conn, message.id)
                    return
                refused = quota.trigger_type_refusal(
                    self.quotas, *conn.session.holds("trigger_type", message.id)
                )
                if refused is not None:
                    quota.warn_once(conn.session.quota_warned, conn, refused, "trigger types")
                    return
                registry.add_type_provider(conn, message)
                conn.session.provide_trigger_type(message.id)
                self.triggers.provider_added(message.id)
            case protocol.UnregisterTriggerType():
                if conn.session.withdraw_trigger_type(message.id):
                    self.triggers.provider_removed(conn, message.id)
            case protocol.RegisterTrigger():
                self._bind(conn, message)
            case protocol.UnregisterTrigger():
                binding = registry.bindings.get((conn.worker_id, message.id))
                if binding is not None:
                    self.triggers.unbind(binding)
                    conn.session.unbound(message.id)
            case protocol.TriggerRegistrationResult():
                self.triggers.provider_answered(conn, message)
            case protocol.RegisterService():
                conn.session.declare_service(message)
            case protocol.Reattach():
                self._reattach(conn, message)
            case protocol.Ping():
                await conn.send(protocol.Pong())
            case _:
                log.debug("%s: %s frame ignored", conn, message.TYPE)

    def _bind(self, conn: WorkerConnection, message: protocol.RegisterTrigger) -> None:
        """A binding of this connection, within its quota (refused: a failed
        ``triggerregistrationresult`` with ``quota_exceeded``)."""
        conn.session.mark_listed()
        refused = quota.trigger_refusal(self.quotas, *conn.session.holds("trigger", message.id))
        if refused is not None:
            quota.warn_once(conn.session.quota_warned, conn, refused, "bindings")
            conn.post(
                protocol.TriggerRegistrationResult(
                    id=message.id,
                    trigger_type=message.trigger_type,
                    function_id=message.function_id,
                    error=refused,
                )
            )
            return
        binding = Binding(
            owner=conn,
            id=message.id,
            trigger_type=message.trigger_type,
            function_id=message.function_id,
            config=message.config,
            metadata=message.metadata,
        )
        self.triggers.bind(binding)
        if self.registry.bindings.get(binding.key) is binding:
            conn.session.bound(message.id)
        else:  # refused by its type (a binding it replaced is gone too)
            conn.session.unbound(message.id)

    def _reattach(self, conn: WorkerConnection, msg: protocol.Reattach) -> None:
        """Retire the half-open old socket of a reconnected worker (spec §3.5)."""
        old = self.connections.get(msg.previous_worker_id)
        if old is None or old is conn or msg.reattach_token is None:
            return
        expected = old.session.reattach_token.encode()
        if hmac.compare_digest(expected, msg.reattach_token.encode()):
            log.info("%s reattached: retiring %s", conn, old)
            old.request_stop()

    # --- disconnect (spec §3.7, D4) -----------------------------------------------------------

    def disconnected(self, conn: WorkerConnection) -> None:
        registry = self.registry
        if self.connections.get(conn.worker_id) is conn:
            del self.connections[conn.worker_id]
        stopped = Outcome(error=protocol.ErrorBody("invocation_stopped", "Invocation stopped"))
        for invocation in list(conn.assigned):
            invocation.settle(stopped)
        for invocation in list(conn.outgoing):
            invocation.abandon()
        version = registry.version
        functions, trigger_types = conn.session.take_registrations()
        for function_id in functions:
            registry.remove_provider(conn, function_id)
        for binding in list(registry.owned_by(conn)):
            self.triggers.unbind(binding)
        for type_id in trigger_types:
            self.triggers.provider_removed(conn, type_id)
        self.channels.owner_gone(conn.worker_id)
        if registry.version != version:
            self.events.functions_changed()
        self.worker_event("worker_disconnected", conn.worker_id)
