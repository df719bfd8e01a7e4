"""``III``: a worker on trio. Register functions and triggers, connect, call others.

Registrations live on the client and are (re)sent on every connect with the same trigger
ids, so a worker survives engine restarts and dropped connections with no user code. The
connection is retried on ANY end, a clean close included, with exponential backoff and
jitter. Calls made while disconnected wait for the connection within their timeout.
"""

from __future__ import annotations

import inspect
import logging
import os
import platform
import random
import signal
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, Protocol

import attrs
import orjson
import trio

from iii_trio.runtime.wire import handshake, protocol
from iii_trio.runtime.wire.websocket import ClientWebSocket, ConnectionClosed
from iii_trio.sdk.errors import ConnectionLost, InvocationError, InvocationTimeout

log = logging.getLogger("iii_trio.sdk")

Handler = Callable[..., Any]
OUTBOX_CAPACITY = 1024
# Largest write the writer assembles from queued frames.
_WRITE_BATCH_BYTES = 256 * 1024

# The trace context (traceparent, baggage) of the invocation a handler is serving: calls
# the handler makes carry it, so the engine links them into the caller's trace.
_trace_context: ContextVar[tuple[str | None, str | None] | None] = ContextVar(
    "iii_trio_sdk_trace_context", default=None
)


def _with_trace_context(frame: dict[str, Any]) -> dict[str, Any]:
    context = _trace_context.get()
    if context is not None:
        traceparent, baggage = context
        if traceparent is not None:
            frame["traceparent"] = traceparent
        if baggage is not None:
            frame["baggage"] = baggage
    return frame


@attrs.frozen
class InvocationContext:
    """The optional second argument of a handler."""

    invocation_id: str
    function_id: str
    caller: str | None  # the calling worker's id, when a worker called
    metadata: Any = None


@attrs.define(eq=False)
class _Function:
    id: str
    handler: Handler
    description: str | None
    metadata: Any
    wants_context: bool
    is_async: bool


@attrs.define(eq=False)
class TriggerHandle:
    id: str
    trigger_type: str
    function_id: str
    config: Any
    metadata: Any
    _client: III = attrs.field(repr=False)

    def unregister(self) -> None:
        self._client._unregister_trigger(self)


@attrs.frozen
class Binding:
    """A binding of one of this worker's trigger types, as the engine delivered it."""

    id: str
    function_id: str
    config: Any
    metadata: Any = None


class TriggerTypeHandler(Protocol):
    async def register_trigger(self, binding: Binding) -> None: ...

    async def unregister_trigger(self, binding: Binding) -> None: ...


@attrs.define(eq=False)
class _Pending:
    function_id: str
    done: trio.Event = attrs.field(factory=trio.Event)
    result: Any = None
    error: InvocationError | None = None


class III:
    def __init__(
        self,
        url: str | None = None,
        *,
        worker_name: str | None = None,
        max_concurrent_handlers: int = 64,
        sync_handler_threads: int = 8,
        default_timeout: float = 30.0,
        reconnect_initial: float = 1.0,
        reconnect_max: float = 30.0,
        token: str | None = None,
        shutdown_timeout: float = 10.0,
    ) -> None:
        self.url = url or os.environ.get("III_URL", "ws://localhost:49134")
        self.worker_name = worker_name or f"{platform.node()}:{os.getpid()}"
        self.default_timeout = default_timeout
        self.shutdown_timeout = shutdown_timeout
        self._running_handlers = 0
        self._handlers_idle = trio.Event()
        self._flushed = trio.Event()
        self.reconnect_initial = reconnect_initial
        self.reconnect_max = reconnect_max
        self.token = token if token is not None else os.environ.get("III_TOKEN") or None
        self.worker_id: str | None = None
        self._reattach_token: str | None = None
        self._functions: dict[str, _Function] = {}
        self._triggers: dict[str, TriggerHandle] = {}
        self._trigger_types: dict[str, tuple[str, TriggerTypeHandler]] = {}
        self._pending: dict[str, _Pending] = {}
        self._handler_limit = trio.CapacityLimiter(max_concurrent_handlers)
        self._thread_limit = trio.CapacityLimiter(sync_handler_threads)
        self._connected = trio.Event()
        self._outbox: trio.MemorySendChannel[bytes] | None = None
        self._pong = trio.Event()

    # --- registration -----------------------------------------------------------------

    def function(
        self, id: str, *, description: str | None = None, metadata: Any = None
    ) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self.register_function(id, handler, description=description, metadata=metadata)
            return handler

        return decorate

    def register_function(
        self, id: str, handler: Handler, *, description: str | None = None, metadata: Any = None
    ) -> None:
        positional = [
            p
            for p in inspect.signature(handler).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        function = _Function(
            id,
            handler,
            description,
            metadata,
            wants_context=len(positional) >= 2,
            is_async=inspect.iscoroutinefunction(handler),
        )
        self._functions[id] = function
        self._post(self._register_frame(function))

    def unregister_function(self, id: str) -> None:
        if self._functions.pop(id, None) is not None:
            self._post(protocol.encode(protocol.UnregisterFunction(id=id)))

    def register_trigger(
        self, trigger_type: str, function_id: str, config: Any = None, *, metadata: Any = None
    ) -> TriggerHandle:
        handle = TriggerHandle(
            str(uuid.uuid4()), trigger_type, function_id, config or {}, metadata, self
        )
        self._triggers[handle.id] = handle
        self._post(self._trigger_frame(handle))
        return handle

    def register_trigger_type(
        self, id: str, handler: TriggerTypeHandler, *, description: str = ""
    ) -> None:
        """Provide a trigger type: ``handler.register_trigger(binding)`` runs for every
        binding of it (raise to refuse one), ``handler.unregister_trigger(binding)`` when
        one goes away. The worker fires bindings itself with :meth:`trigger`."""
        self._trigger_types[id] = (description, handler)
        self._post(self._trigger_type_frame(id, description))

    def _unregister_trigger(self, handle: TriggerHandle) -> None:
        if self._triggers.pop(handle.id, None) is not None:
            frame = protocol.UnregisterTrigger(id=handle.id, trigger_type=handle.trigger_type)
            self._post(protocol.encode(frame))

    # --- calls ------------------------------------------------------------------------

    async def trigger(
        self,
        function_id: str,
        data: Any = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the documented SDK API
        action: str | dict[str, Any] | None = None,
    ) -> Any:
        """Call ``function_id`` and return its result; raises :class:`InvocationError`.

        ``action="void"`` fires and forgets (returns None); ``action={"type": "enqueue",
        "queue": name}`` hands the call to a named queue and returns ``{messageReceiptId}``.
        """
        if action == "void" or (isinstance(action, dict) and action.get("type") == "void"):
            await self.trigger_void(function_id, data, timeout=timeout)
            return None
        seconds = self.default_timeout if timeout is None else timeout
        invocation_id = protocol.new_uuid()
        frame: dict[str, Any] = {
            "type": "invokefunction",
            "invocation_id": invocation_id,
            "function_id": function_id,
            "data": data,
        }
        if isinstance(action, dict):
            frame["action"] = action
        elif action is not None:
            raise ValueError(f"unknown action {action!r}: use 'void' or an enqueue action")
        _with_trace_context(frame)
        pending = self._pending[invocation_id] = _Pending(function_id)
        try:
            with trio.move_on_after(seconds):
                await self._send_when_connected(protocol.encode_json(frame))
                await pending.done.wait()
        finally:
            self._pending.pop(invocation_id, None)
        if not pending.done.is_set():
            raise InvocationTimeout(function_id, seconds)
        if pending.error is not None:
            raise pending.error
        return pending.result

    async def trigger_void(
        self,
        function_id: str,
        data: Any = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the documented SDK API
    ) -> None:
        """Fire and forget: the target runs, nobody waits for its result."""
        seconds = self.default_timeout if timeout is None else timeout
        frame = {
            "type": "invokefunction",
            "function_id": function_id,
            "data": data,
            "action": {"type": "void"},
        }
        _with_trace_context(frame)
        with trio.move_on_after(seconds) as scope:
            await self._send_when_connected(protocol.encode_json(frame))
        if scope.cancelled_caught:
            raise InvocationTimeout(function_id, seconds)

    async def list_functions(self, *, include_internal: bool = False) -> list[dict[str, Any]]:
        result = await self.trigger(
            "engine::functions::list", {"include_internal": include_internal}
        )
        functions: list[dict[str, Any]] = result["functions"]
        return functions

    async def list_workers(self) -> list[dict[str, Any]]:
        workers: list[dict[str, Any]] = (await self.trigger("engine::workers::list", {}))["workers"]
        return workers

    async def list_triggers(self, *, include_internal: bool = False) -> list[dict[str, Any]]:
        result = await self.trigger(
            "engine::triggers::list", {"include_internal": include_internal}
        )
        triggers: list[dict[str, Any]] = result["triggers"]
        return triggers

    # --- connection -------------------------------------------------------------------

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[III]:
        """Connect (retrying until the engine answers), serve invocations, and keep
        reconnecting until the block ends."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self._connection_loop)
            try:
                yield self
            finally:
                with trio.CancelScope(shield=True):
                    await self._drain()
                nursery.cancel_scope.cancel()

    async def _drain(self) -> None:
        """Graceful shutdown: withdraw every function (the engine routes new calls to
        other replicas), then let running handlers answer, for up to shutdown_timeout."""
        for function_id in self._functions:
            self._post(protocol.encode(protocol.UnregisterFunction(id=function_id)))
        with trio.move_on_after(self.shutdown_timeout):
            if self._outbox is not None:
                # The engine may have routed calls here before it read the withdrawal. Its
                # pong comes after them on the socket: once it is in, every such call has
                # arrived and its handler runs (or the connection ended meanwhile).
                self._pong = trio.Event()
                self._post(protocol.encode(protocol.Ping()))
                await self._pong.wait()
            while self._running_handlers:
                self._handlers_idle = trio.Event()
                await self._handlers_idle.wait()
            outbox = self._outbox
            if outbox is not None:
                # An empty frame marks the end: once the writer reaches it, every result
                # before it is on the wire.
                self._flushed = trio.Event()
                await outbox.send(b"")
                await self._flushed.wait()

    def run(self, main: Callable[[III], Awaitable[None]] | None = None) -> None:
        """Connect and serve until SIGINT / SIGTERM (or until ``main(iii)`` returns)."""

        async def serve() -> None:
            async with self.connect():
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    if main is None:
                        async for _ in signals:
                            return
                    else:
                        await main(self)

        trio.run(serve)

    async def _connection_loop(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        delay = self.reconnect_initial
        first = True
        while True:
            headers = [("Authorization", f"Bearer {self.token}")] if self.token else []
            try:
                ws = await handshake.connect(self.url, headers)
            except (OSError, ConnectionClosed, handshake.HandshakeRejected) as exc:
                pause = min(delay, self.reconnect_max) * random.uniform(0.7, 1.3)
                log.info("cannot reach %s (%s); retrying in %.2f s", self.url, exc, pause)
                await trio.sleep(pause)
                delay = min(delay * 2, self.reconnect_max)
                continue
            replay = self._replay_frames()
            send, receive = trio.open_memory_channel[bytes](OUTBOX_CAPACITY + len(replay))
            connected_at = trio.current_time()
            try:
                async with trio.open_nursery() as nursery:
                    self._outbox = send
                    for frame in replay:
                        send.send_nowait(frame)
                    nursery.start_soon(self._write_loop, ws, receive, nursery.cancel_scope)
                    self._connected.set()
                    if first:
                        task_status.started()
                        first = False
                    await self._read_loop(ws, nursery)
                    nursery.cancel_scope.cancel()
            finally:
                self._outbox = None
                self._pong.set()  # no pong will come on this connection
                receive.close()  # senders still waiting on this connection fail over
                self._connected = trio.Event()
                for pending in list(self._pending.values()):
                    pending.error = ConnectionLost(pending.function_id)
                    pending.done.set()
                await ws.aclose()
            # A connection that ended at once (an engine accepting, then closing) keeps
            # backing off; one that lived a while reconnects after the initial delay.
            if trio.current_time() - connected_at > self.reconnect_max:
                delay = self.reconnect_initial
            pause = min(delay, self.reconnect_max) * random.uniform(0.7, 1.3)
            log.info("connection to %s ended; reconnecting in %.2f s", self.url, pause)
            await trio.sleep(pause)
            delay = min(delay * 2, self.reconnect_max)

    def _replay_frames(self) -> list[bytes]:
        # The order the official SDKs use: reattach, trigger types, functions, triggers,
        # metadata. Reattach names the previous connection, so the engine retires it at
        # once if it is still half-open (a network drop) instead of routing calls into it.
        frames = []
        if self.worker_id is not None and self._reattach_token is not None:
            reattach = protocol.Reattach(self.worker_id, self._reattach_token)
            frames.append(protocol.encode(reattach))
        frames += [self._trigger_type_frame(t, d) for t, (d, _) in self._trigger_types.items()]
        frames += [self._register_frame(f) for f in self._functions.values()]
        frames += [self._trigger_frame(t) for t in self._triggers.values()]
        metadata = {
            "runtime": "python-trio",
            "version": _version(),
            "name": self.worker_name,
            "os": f"{platform.system().lower()} {platform.release()}",
            "pid": os.getpid(),
        }
        frames.append(
            protocol.encode_json(
                {
                    "type": "invokefunction",
                    "function_id": "engine::workers::register",
                    "data": metadata,
                    "action": {"type": "void"},
                }
            )
        )
        return frames

    async def _write_loop(
        self,
        ws: ClientWebSocket,
        frames: trio.MemoryReceiveChannel[bytes],
        connection: trio.CancelScope,
    ) -> None:
        # Every frame that is ready goes out in one write (one send_all per batch instead
        # of one per frame: with many calls in flight, most frames share a write).
        try:
            async for first in frames:
                batch = [first]
                size = len(first)
                while size < _WRITE_BATCH_BYTES:
                    try:
                        frame = frames.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    batch.append(frame)
                    size += len(frame)
                await self._write_batch(ws, batch)
        except ConnectionClosed as closed:
            # A reset seen while sending ends this connection only; the loop reconnects.
            log.info("connection lost while sending (%s)", closed.code)
            connection.cancel()

    async def _write_batch(self, ws: ClientWebSocket, batch: list[bytes]) -> None:
        # An empty frame marks a flush (see _drain): it is set once what came before it
        # is written.
        start = 0
        for end, frame in enumerate(batch):
            if not frame:
                if end > start:
                    await ws.send_texts(batch[start:end])
                self._flushed.set()
                start = end + 1
        if start < len(batch):
            await ws.send_texts(batch[start:] if start else batch)

    async def _read_loop(self, ws: ClientWebSocket, nursery: trio.Nursery) -> None:
        while True:
            try:
                raw = await ws.receive()
            except ConnectionClosed as closed:
                log.info("engine closed the connection (%s)", closed.code)
                return
            try:
                message = protocol.decode(raw)
            except (protocol.FrameRejected, protocol.UnknownMessageType) as exc:
                log.debug("ignored frame: %s", exc)
                continue
            if isinstance(message, protocol.InvocationResult):
                pending = self._pending.get(message.invocation_id)
                if pending is not None:
                    if message.error is not None:
                        e = message.error
                        pending.error = InvocationError(e.code, e.message, e.stacktrace)
                    pending.result = message.result
                    pending.done.set()
            elif isinstance(message, protocol.InvokeFunction) and message.invocation_id:
                nursery.start_soon(self._serve, message)
            elif isinstance(message, (protocol.RegisterTrigger, protocol.UnregisterTrigger)):
                nursery.start_soon(self._binding_changed, message)
            elif isinstance(message, protocol.Pong):
                self._pong.set()
            elif isinstance(message, protocol.WorkerRegistered):
                self.worker_id = message.worker_id
                self._reattach_token = message.reattach_token

    async def _serve(self, call: protocol.InvokeFunction) -> None:
        assert call.invocation_id is not None
        function = self._functions.get(call.function_id)
        reply: dict[str, Any] = {
            "type": "invocationresult",
            "invocation_id": call.invocation_id,
            "function_id": call.function_id,
        }
        if function is None:
            reply["error"] = {
                "code": "function_not_found",
                "message": f"Function {call.function_id} not found",
            }
        else:
            data = call.data
            caller = data.get("_caller_worker_id") if isinstance(data, dict) else None
            args: list[Any] = [data]
            if function.wants_context:
                args.append(
                    InvocationContext(call.invocation_id, call.function_id, caller, call.metadata)
                )
            if call.traceparent is not None or call.baggage is not None:
                _trace_context.set((call.traceparent, call.baggage))  # this task only
            self._running_handlers += 1
            try:
                result = await self._run_handler(function, args)
            except Exception as exc:
                reply["error"] = {
                    "code": "invocation_failed",
                    "message": str(exc) or type(exc).__name__,
                    "stacktrace": traceback.format_exc(),
                }
            else:
                if result is not None:
                    reply["result"] = result
            finally:
                self._running_handlers -= 1
        try:
            try:
                frame = orjson.dumps(reply)
            except (TypeError, orjson.JSONEncodeError) as exc:
                # The caller still gets an answer, instead of waiting for its timeout.
                log.error("result of %s is not JSON: %s", call.function_id, exc)
                reply.pop("result", None)
                reply["error"] = {
                    "code": "invocation_failed",
                    "message": f"the result of {call.function_id} is not JSON: {exc}",
                }
                frame = orjson.dumps(reply)
            await self._send_when_connected(frame, wait=False)
        finally:
            if not self._running_handlers:
                self._handlers_idle.set()

    async def _run_handler(self, function: _Function, args: list[Any]) -> Any:
        """The handler, in one of max_concurrent_handlers slots. A free slot is taken
        without waiting (CapacityLimiter's ``async with`` yields to the scheduler even
        then: a trip per call saved)."""
        limit = self._handler_limit
        try:
            limit.acquire_nowait()
        except trio.WouldBlock:
            await limit.acquire()
        try:
            if function.is_async:
                return await function.handler(*args)
            return await trio.to_thread.run_sync(
                function.handler, *args, limiter=self._thread_limit
            )
        finally:
            limit.release()

    async def _binding_changed(
        self, message: protocol.RegisterTrigger | protocol.UnregisterTrigger
    ) -> None:
        provided = self._trigger_types.get(message.trigger_type or "")
        if isinstance(message, protocol.UnregisterTrigger):
            if provided is not None:
                await provided[1].unregister_trigger(Binding(message.id, "", None))
            return
        answer: dict[str, Any] = {
            "type": "triggerregistrationresult",
            "id": message.id,
            "trigger_type": message.trigger_type,
            "function_id": message.function_id,
        }
        if provided is None:
            answer["error"] = {
                "code": "trigger_type_not_found",
                "message": f"Trigger type {message.trigger_type} not provided by this worker",
            }
        else:
            binding = Binding(message.id, message.function_id, message.config, message.metadata)
            try:
                await provided[1].register_trigger(binding)
            except Exception as exc:
                answer["error"] = {"code": "trigger_registration_failed", "message": str(exc)}
        await self._send_when_connected(protocol.encode_json(answer), wait=False)

    # --- sending ------------------------------------------------------------------------

    def _post(self, frame: bytes) -> None:
        """Registration frames: sent now when connected; otherwise replayed on connect."""
        if self._outbox is not None:
            try:
                self._outbox.send_nowait(frame)
            except trio.WouldBlock:
                log.warning("outbox full: the frame will be sent on the next reconnect")

    async def _send_when_connected(self, frame: bytes, *, wait: bool = True) -> None:
        while True:
            outbox = self._outbox
            if outbox is None:
                if not wait:
                    return  # a result for a connection that is gone: nobody to answer
                await self._connected.wait()
                continue
            try:
                # With room in the outbox (the usual case) the frame is queued without
                # the trip through the scheduler that send() always makes.
                try:
                    outbox.send_nowait(frame)
                except trio.WouldBlock:
                    await outbox.send(frame)
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                if not wait:
                    return

    def _register_frame(self, function: _Function) -> bytes:
        message = protocol.RegisterFunction(
            id=function.id, description=function.description, metadata=function.metadata
        )
        return protocol.encode(message)

    def _trigger_type_frame(self, type_id: str, description: str) -> bytes:
        return protocol.encode(protocol.RegisterTriggerType(id=type_id, description=description))

    def _trigger_frame(self, handle: TriggerHandle) -> bytes:
        message = protocol.RegisterTrigger(
            id=handle.id,
            trigger_type=handle.trigger_type,
            function_id=handle.function_id,
            config=handle.config,
            metadata=handle.metadata,
        )
        return protocol.encode(message)


def _version() -> str:
    from iii_trio import __version__

    return __version__
