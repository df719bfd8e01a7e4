"""The engine: one supervision tree of actors (docs/architecture.md).

    engine (supervisor, one_for_one)
    ├── registry       the functions-available notifier over the registry data
    ├── invocations    supervisor of the live invocation actors and their deadline timer
    ├── channels       expiry of unconnected channels
    ├── modules        supervisor, the always-loaded WorkerModule, then config order
    └── listener       the worker port; one connection actor per socket

Modules start before the listener so a worker never sees a half-loaded engine; on
shutdown the tree stops in reverse, so connections close (1012) first.
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from iii_trio.actors import Actor, ActorSystem, ChildSpec, Supervisor
from iii_trio.runtime.builtins.module import WorkerModule
from iii_trio.runtime.calls.registry import Registry
from iii_trio.runtime.calls.router import Router
from iii_trio.runtime.calls.tracing import Observer
from iii_trio.runtime.calls.triggers import Triggers
from iii_trio.runtime.config.loading import EngineConfig
from iii_trio.runtime.connections.channels import ChannelTable
from iii_trio.runtime.connections.connection import WorkerConnection
from iii_trio.runtime.connections.dispatch import Dispatcher
from iii_trio.runtime.connections.listener import Listener
from iii_trio.runtime.modules import BUILT_IN, create, is_available
from iii_trio.runtime.modules.base import EngineModule
from iii_trio.runtime.wire import protocol

log = logging.getLogger("iii_trio.engine")

# Bounded outbox of each worker connection (spec §4.7): at most this many frames and this
# many bytes queued (a single larger frame is still accepted into an empty outbox).
DEFAULT_OUTBOX_CAPACITY = 1024
DEFAULT_OUTBOX_BYTES = 8 * 1024 * 1024
# How long after a change of the function set engine::functions-available fires; changes
# within this window are coalesced (spec: within 5 s).
FUNCTIONS_AVAILABLE_DELAY = 0.5

# An engine-served GET endpoint: returns (status, headers, body).
HttpEndpoint = Callable[[], Awaitable[tuple[int, list[tuple[str, str]], bytes]]]

_current_engine: contextvars.ContextVar[Engine] = contextvars.ContextVar("iii_trio_engine")


def current_engine() -> Engine:
    try:
        return _current_engine.get()
    except LookupError:
        raise RuntimeError(
            "current_engine() was called outside a running engine: call it from a task "
            "started inside Engine.run() (an actor, a module, an engine function)"
        ) from None


class Engine:
    def __init__(
        self,
        config: EngineConfig,
        *,
        outbox_capacity: int = DEFAULT_OUTBOX_CAPACITY,
        outbox_bytes: int = DEFAULT_OUTBOX_BYTES,
    ) -> None:
        self.config = config
        self.outbox_capacity = outbox_capacity
        self.outbox_bytes = outbox_bytes
        self.system = ActorSystem()
        self.registry = Registry()
        self.router = Router(self.registry, config.default_timeout)
        self.triggers = Triggers(self.registry)
        self.channels = ChannelTable()
        self.connections: dict[str, WorkerConnection] = {}
        self.dispatcher = Dispatcher(self)
        self.worker_module = WorkerModule(self)
        # Running modules by name (the config kind: "rest_api", "state", ...), kept by
        # EngineModule.run so a restarted module replaces its predecessor.
        self.modules: dict[str, EngineModule] = {}
        self.listener: Listener | None = None
        # GET endpoints modules serve on the RestApiModule's port when no http trigger
        # takes the path (the observability module's /metrics): path -> answer.
        self.http_endpoints: dict[str, HttpEndpoint] = {}
        self.port: int | None = None
        self._functions_changed = trio.Event()
        self._root: Supervisor | None = None

    # --- hooks used by connections and modules ---------------------------------------------

    async def handle_frame(self, conn: WorkerConnection, frame: str | bytes) -> None:
        await self.dispatcher.handle_frame(conn, frame)

    def disconnected(self, conn: WorkerConnection) -> None:
        self.dispatcher.disconnected(conn)

    def functions_changed(self) -> None:
        self._functions_changed.set()

    def worker_event(self, event: str, worker_id: str) -> None:
        if self.router.observer is not None:
            self.router.observer.worker_event(event)
        module = self.worker_module
        module.fire(module.workers_available, {"event": event, "worker_id": worker_id})

    @property
    def observer(self) -> Observer | None:
        """The observability module's hooks while it runs enabled; None otherwise."""
        return self.router.observer

    @observer.setter
    def observer(self, observer: Observer | None) -> None:
        self.router.observer = observer

    def telemetry_received(self, conn: WorkerConnection | None, frame: protocol.Telemetry) -> None:
        """Ingested by the observability module when it runs, otherwise dropped (D1)."""
        observer = self.router.observer
        if observer is not None:
            observer.telemetry(conn, frame)

    async def enqueue(self, conn: WorkerConnection, msg: protocol.InvokeFunction) -> None:
        """The invoke action ``enqueue`` (spec §4.5): the QueueModule's, when it is loaded."""
        enqueue_action = getattr(self.modules.get("queue"), "enqueue_action", None)
        if enqueue_action is not None:
            if self.router.observer is not None:
                self.router.observer.call_deferred()
            await enqueue_action(conn, msg)
        elif msg.invocation_id is not None:
            await self.dispatcher.reply(
                conn,
                msg.invocation_id,
                msg.function_id,
                error=protocol.ErrorBody("enqueue_error", "QueueModule not loaded"),
            )

    # --- the tree ---------------------------------------------------------------------------

    def _tree(self) -> Supervisor:
        def invocations() -> Supervisor:
            deadlines = ChildSpec.reusing("deadlines", self.router.deadlines)
            supervisor = Supervisor("invocations", [deadlines])
            self.router.supervisor = supervisor
            return supervisor

        def listener() -> Listener:
            self.listener = Listener(self)
            return self.listener

        def modules() -> Supervisor:
            children = [ChildSpec.reusing("worker", self.worker_module)]
            for entry in self.config.modules:
                if entry.kind in BUILT_IN or not is_available(entry.kind):
                    continue  # the CLI has logged what is not in this build
                children.append(ChildSpec(entry.kind, functools.partial(create, self, entry)))
            return Supervisor("modules", children)

        return Supervisor(
            "engine",
            [
                ChildSpec("registry", lambda: _Task("registry", self._notify_functions_available)),
                ChildSpec("invocations", invocations),
                ChildSpec("channels", lambda: _Task("channels", self.channels.expire_forever)),
                ChildSpec("modules", modules),
                ChildSpec("listener", listener),
            ],
        )

    async def run(self, task_status: trio.TaskStatus[Engine] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the engine until cancelled; ``started()`` reports it once the port is bound."""
        _current_engine.set(self)
        self._root = self._tree()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.system.run_actor, self._root, None)
            assert self.listener is not None
            self.port = self.listener.port
            task_status.started(self)

    async def drain(self, seconds: float) -> None:
        """Stop accepting connections and wait up to ``seconds`` for the modules' work in
        flight (HTTP requests) and live invocations."""
        if self.listener is not None:
            self.listener.stop_accepting()
        with trio.move_on_after(seconds):
            for module in list(self.modules.values()):
                await module.drain()
            await self.router.wait_idle()
        if self.router.live:
            log.warning(
                "shutdown: %d invocation(s) still live after %.1f s", len(self.router.live), seconds
            )

    async def _notify_functions_available(self) -> None:
        seen = self.registry.version
        while True:
            await self._functions_changed.wait()
            self._functions_changed = trio.Event()
            await trio.sleep(FUNCTIONS_AVAILABLE_DELAY)
            if self.registry.version == seen:
                continue
            seen = self.registry.version
            module = self.worker_module
            if module.functions_available.bindings:
                payload = {
                    "event": "functions_changed",
                    "functions": self.registry.function_rows(include_internal=False),
                }
                module.fire(module.functions_available, payload)


class _Task(Actor):
    """An actor whose body is one long-running function of the engine."""

    kind = "service"

    def __init__(self, name: str, body: Any) -> None:
        super().__init__(name)
        self._body = body

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self._body()


@asynccontextmanager
async def open_engine(config: EngineConfig) -> AsyncIterator[Engine]:
    """Run an engine for the duration of the block (tests, embedding)."""
    async with trio.open_nursery() as nursery:
        engine: Engine = await nursery.start(Engine(config).run)
        try:
            yield engine
        finally:
            nursery.cancel_scope.cancel()
