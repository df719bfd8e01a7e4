"""The engine: one supervision tree of actors (docs/architecture.md).

    engine (supervisor, one_for_one)
    ├── registry       the functions-available notifier over the registry data
    ├── invocations    supervisor of the live invocation actors and their deadline timer
    ├── channels       expiry of unconnected channels
    ├── modules        supervisor: the always-loaded WorkerModule, then config order
    └── listener       the worker port; one connection actor per socket

This is where the parts meet: the core (:mod:`~iii_trio.runtime.calls`,
:mod:`~iii_trio.runtime.connections`, :mod:`~iii_trio.runtime.builtins`) is built here and
each configured module gets its own :class:`~iii_trio.runtime.modules.context.ModuleContext`.
Modules start before the listener so a worker never sees a half-loaded engine; on shutdown
the tree stops in reverse, so connections close (1012) first.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio

from iii_trio.actors import Actor, ActorSystem, ChildSpec, Supervisor
from iii_trio.runtime.builtins.events import EngineEvents
from iii_trio.runtime.builtins.module import WorkerModule
from iii_trio.runtime.calls.registry import Registry
from iii_trio.runtime.calls.router import Router
from iii_trio.runtime.calls.triggers import Triggers
from iii_trio.runtime.config import loading
from iii_trio.runtime.config.loading import EngineConfig, ModuleEntry
from iii_trio.runtime.connections.access import AccessPolicy, ExposedPort, RefusalLog
from iii_trio.runtime.connections.admission import (
    DescriptorReserve,
    PortGate,
    raise_descriptor_limit,
)
from iii_trio.runtime.connections.channels import ChannelTable
from iii_trio.runtime.connections.connection import (
    DEFAULT_OUTBOX_BYTES,
    DEFAULT_OUTBOX_CAPACITY,
    WorkerConnection,
)
from iii_trio.runtime.connections.dispatch import Dispatcher
from iii_trio.runtime.connections.keepalive import KeepaliveSettings
from iii_trio.runtime.connections.listener import Listener
from iii_trio.runtime.connections.quotas import WorkerQuotas
from iii_trio.runtime.modules import catalog
from iii_trio.runtime.modules.base import EngineModule
from iii_trio.runtime.modules.context import ModuleContext, Offers
from iii_trio.runtime.modules.kind import ModuleKind

log = logging.getLogger("iii_trio.engine")


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> EngineConfig:
    """Read and validate a config file against every module kind of this build."""
    return loading.load_config(path, kinds=catalog.CHOICES, environ=environ)


def parse_config(
    text: str, *, source: str = "config.yaml", environ: Mapping[str, str] | None = None
) -> EngineConfig:
    """Validate config text against every module kind of this build."""
    return loading.parse_config(text, kinds=catalog.CHOICES, source=source, environ=environ)


def default_config() -> EngineConfig:
    """``--use-default-config``: RestApi, State, Stream, Queue, PubSub and Cron, all defaults."""
    return catalog.defaults()


class Engine:
    """The assembled engine. ``kinds`` looks up the declaration of each configured module
    kind (the catalog's; tests add kinds of their own)."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        outbox_capacity: int = DEFAULT_OUTBOX_CAPACITY,
        outbox_bytes: int = DEFAULT_OUTBOX_BYTES,
        kinds: Mapping[str, ModuleKind] | None = None,
    ) -> None:
        self.config = config
        self.outbox_capacity = outbox_capacity
        self.outbox_bytes = outbox_bytes
        self._kinds = kinds
        self.system = ActorSystem()
        self.registry = Registry()
        self.router = Router(self.registry, config.default_timeout)
        self.triggers = Triggers(self.registry)
        self.channels = ChannelTable(
            max_worker_channels=config.max_worker_channels,
            per_worker=config.max_channels_per_worker,
        )
        self.events = EngineEvents(self.registry, self.router)
        self.dispatcher = Dispatcher(
            self.registry,
            self.router,
            self.triggers,
            self.channels,
            self.events,
            reserved_types=catalog.RESERVED_TRIGGER_TYPES,
            missing_actions=catalog.MISSING_ACTIONS,
            quotas=WorkerQuotas(
                functions=config.max_functions_per_worker,
                triggers=config.max_triggers_per_worker,
                trigger_types=config.max_trigger_types_per_worker,
            ),
        )
        # Who may connect, and how many (runtime/connections/access.py, admission.py).
        self.access = AccessPolicy(config.auth_token, config.protected_mode)
        self.descriptors = DescriptorReserve(config.reserved_descriptors)
        self.refusals = RefusalLog()
        self.gates: list[PortGate] = []
        self.keepalive = KeepaliveSettings.from_ms(
            config.keepalive_interval, config.keepalive_timeout
        )
        self.worker_gate = self.port_gate(
            "worker port", config.max_connections, config.max_connections_per_address
        )
        # What the running modules offer, shared by their contexts; ``modules`` is the
        # table of running modules by name (the config kind), the WorkerModule included.
        self.offers = Offers()
        self.listener: Listener | None = None
        self.port: int | None = None

    @property
    def modules(self) -> dict[str, Any]:
        """Running modules by name (``rest_api``, ``state``, ..., ``worker``)."""
        return self.offers.modules

    @property
    def connections(self) -> dict[str, WorkerConnection]:
        """Live worker connections by worker id."""
        return self.dispatcher.connections

    def context(self, name: str) -> ModuleContext:
        """A module's handle on this engine (made once per module, kept across restarts)."""
        return ModuleContext(
            name,
            router=self.router,
            registry=self.registry,
            dispatcher=self.dispatcher,
            channels=self.channels,
            offers=self.offers,
            access=self.access,
            keepalive=self.keepalive,
            port_gate=self.port_gate,
        )

    def port_gate(self, name: str, max_connections: int, max_per_address: int) -> PortGate:
        """The admission of one more listening port, sharing the descriptor reserve."""
        gate = PortGate(
            name, max_connections, max_per_address, self.descriptors, refusals=self.refusals
        )
        self.gates = [g for g in self.gates if g.name != name] + [gate]  # a restart replaces
        return gate

    def connection_caps(self) -> dict[str, int]:
        """``max_connections`` of every port with a gate, by port name."""
        return {gate.name: gate.max_connections for gate in self.gates}

    def exposed(self) -> list[ExposedPort]:
        """Every port listening now and who it admits (the CLI logs them at startup)."""
        ports = []
        if self.port is not None:
            ports.append(
                ExposedPort("worker port", self.config.host, self.port, self.access.describe())
            )
        return ports + list(self.offers.exposed.values())

    # --- the tree ---------------------------------------------------------------------------

    def _kind(self, name: str) -> ModuleKind | None:
        if self._kinds is not None and name in self._kinds:
            return self._kinds[name]
        return catalog.kind(name)

    def _tree(self) -> Supervisor:
        def invocations() -> Supervisor:
            deadlines = ChildSpec.reusing("deadlines", self.router.deadlines)
            supervisor = Supervisor("invocations", [deadlines])
            self.router.supervisor = supervisor
            return supervisor

        def listener() -> Listener:
            self.listener = Listener(
                self.config,
                self.dispatcher,
                self.channels,
                outbox_capacity=self.outbox_capacity,
                outbox_bytes=self.outbox_bytes,
                access=self.access,
                gate=self.worker_gate,
                keepalive=self.keepalive,
            )
            return self.listener

        def worker_module() -> WorkerModule:
            return WorkerModule(
                registry=self.registry,
                router=self.router,
                dispatcher=self.dispatcher,
                channels=self.channels,
                system=self.system,
                events=self.events,
                modules=self.offers.modules,
            )

        def modules() -> Supervisor:
            children = [ChildSpec("worker", worker_module)]
            for entry in self.config.modules:
                kind = self._kind(entry.kind)
                if kind is None or kind.built_in or kind.create is None:
                    continue  # the CLI has logged what is not in this build
                create = functools.partial(self._create_module, kind, self.context(entry.kind))
                children.append(ChildSpec(entry.kind, functools.partial(create, entry)))
            return Supervisor("modules", children)

        return Supervisor(
            "engine",
            [
                ChildSpec("registry", lambda: _Task("registry", self._notify)),
                ChildSpec("invocations", invocations),
                ChildSpec("channels", lambda: _Task("channels", self.channels.expire_forever)),
                ChildSpec("modules", modules),
                ChildSpec("listener", listener),
            ],
        )

    @staticmethod
    def _create_module(kind: ModuleKind, ctx: ModuleContext, entry: ModuleEntry) -> EngineModule:
        problem = kind.startup_problem(entry)
        if problem is not None:
            raise RuntimeError(problem)
        assert kind.create is not None
        return kind.create(ctx, entry)

    async def _notify(self) -> None:
        await self.events.notify_functions_available()

    async def run(self, task_status: trio.TaskStatus[Engine] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the engine until cancelled; ``started()`` reports it once the port is bound."""
        raise_descriptor_limit()
        self.descriptors.refresh()
        root = self._tree()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.system.run_actor, root, None)
            assert self.listener is not None
            self.port = self.listener.port
            task_status.started(self)

    async def drain(self, seconds: float) -> None:
        """Stop accepting connections and wait up to ``seconds`` for the modules' work in
        flight (HTTP requests) and live invocations."""
        if self.listener is not None:
            self.listener.stop_accepting()
        with trio.move_on_after(seconds):
            for module in list(self.offers.modules.values()):
                await module.drain()
            await self.router.wait_idle()
        if self.router.live:
            log.warning(
                "shutdown: %d invocation(s) still live after %.1f s", len(self.router.live), seconds
            )


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
