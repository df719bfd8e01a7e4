"""``ModuleContext``: everything a module may do with the engine, and nothing more.

A module never holds the engine. It gets one context, made by the engine for it, through
which it calls functions (``call`` waits for the result, ``fire`` does not), routes and lists
calls it accepted itself (the HTTP module's requests), opens channels, opens spans and reads
the engine's own gauges. A module that listens on a port of its own admits its sockets as the
worker port does: ``access`` (protected mode, the token), ``port_gate`` (caps, the shared
descriptor reserve), ``keepalive``, and lists the port for the startup log with ``exposing``.

What it *offers* (functions, trigger types, invoke actions, HTTP endpoints, gauge families) it
declares on :class:`~iii_trio.runtime.modules.base.EngineModule`; :meth:`ModuleContext.hosting`
keeps those registered while the module runs.

Every call a module makes is a live invocation, listed by ``engine::invocations::list``
with the caller ``{kind: module, id: <caller name>}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

import attrs

from iii_trio.runtime.calls import tracing
from iii_trio.runtime.calls.invocation import EngineFunction, Invocation, QueuedCall
from iii_trio.runtime.calls.registry import EngineTriggerType, Registry
from iii_trio.runtime.calls.router import Router
from iii_trio.runtime.calls.tracing import Observer, Span
from iii_trio.runtime.connections.access import AccessPolicy, ExposedPort
from iii_trio.runtime.connections.admission import PortGate
from iii_trio.runtime.connections.channels import Channel, ChannelTable
from iii_trio.runtime.connections.dispatch import Dispatcher, InvokeAction
from iii_trio.runtime.connections.keepalive import KeepaliveSettings

if TYPE_CHECKING:
    from iii_trio.runtime.builtins.module import RunningModule

#: An engine-served GET endpoint: returns (status, headers, body).
HttpEndpoint = Callable[[], Awaitable[tuple[int, list[tuple[str, str]], bytes]]]


@attrs.frozen
class GaugeFamily:
    """A gauge a module reports (``/metrics`` renders every family of every module):
    ``samples()`` gives (labels, value) pairs at the moment of reading."""

    name: str
    help: str
    samples: Callable[[], Iterable[tuple[Mapping[str, str], float]]]


@attrs.frozen
class EngineGauges:
    """The engine's own gauges at one moment."""

    invocations_in_flight: int
    workers_connected: int


@attrs.define(eq=False)
class Offers:
    """The tables in which running modules offer things to the rest of the engine; one set
    per engine, shared by every module's context."""

    modules: dict[str, RunningModule] = attrs.field(factory=dict)
    http_endpoints: dict[str, HttpEndpoint] = attrs.field(factory=dict)
    gauges: dict[str, GaugeFamily] = attrs.field(factory=dict)
    exposed: dict[str, ExposedPort] = attrs.field(factory=dict)  # ports modules listen on


class ModuleContext:
    """One module's handle on the engine (see the module docstring)."""

    def __init__(
        self,
        name: str,
        *,
        router: Router,
        registry: Registry,
        dispatcher: Dispatcher,
        channels: ChannelTable,
        offers: Offers,
        access: AccessPolicy,
        keepalive: KeepaliveSettings,
        port_gate: Callable[[str, int, int], PortGate],
    ) -> None:
        self.name = name
        self._router = router
        self._registry = registry
        self._dispatcher = dispatcher
        self._channels = channels
        self._offers = offers
        self._port_gate = port_gate
        #: the engine's ``auth_token`` and ``protected_mode`` as decisions (a module's
        #: sockets and endpoints apply the same rules as the worker port)
        self.access = access
        #: ``keepalive_interval`` / ``keepalive_timeout`` for a module's upgraded sockets
        self.keepalive = keepalive

    # --- calls -------------------------------------------------------------------------------

    @property
    def default_timeout_ms(self) -> int:
        return self._router.default_timeout_ms

    async def call(
        self,
        function_id: str,
        data: Any,
        *,
        timeout_ms: int | None = None,
        abandon_on_cancel: bool = False,
        caller: str | None = None,
    ) -> Any:
        """Call a function and wait for its result; :class:`InvocationError` with the wire
        error otherwise. ``caller`` names the caller in listings (default: the module)."""
        return await self._router.call(
            function_id,
            data,
            caller_module=caller or self.name,
            timeout_ms=timeout_ms,
            abandon_on_cancel=abandon_on_cancel,
        )

    def fire(self, function_id: str, data: Any, *, caller: str | None = None) -> None:
        """Call a function without waiting; failures are logged."""
        self._router.fire(function_id, data, caller_module=caller or self.name)

    def start(
        self,
        function_id: str,
        data: Any,
        *,
        caller: str | None = None,
        invocation_id: str | None = None,
        timeout_ms: int | None = None,
        deadline: float | None = None,
        started_at_ms: int | None = None,
    ) -> Invocation | None:
        """Route a call and return it at once (None: no such function); :meth:`result`
        waits for it. ``invocation_id``, ``deadline`` and ``started_at_ms`` let a call this
        module listed with :meth:`queue` keep its id, start and deadline."""
        return self._router.start(
            function_id,
            data,
            invocation_id=invocation_id,
            caller_module=caller or self.name,
            reply=False,
            timeout_ms=timeout_ms,
            deadline=deadline,
            started_at_ms=started_at_ms,
        )

    async def result(self, invocation: Invocation) -> Any:
        return await self._router.result(invocation)

    def queue(
        self,
        function_id: str,
        *,
        timeout_ms: int,
        started_at_ms: int | None = None,
        caller: str | None = None,
    ) -> QueuedCall:
        """List a call this module accepted but cannot route yet (state ``queued``); its
        row's start is ``started_at_ms`` (default: now)."""
        return self._router.queue(
            function_id,
            caller_module=caller or self.name,
            timeout_ms=timeout_ms,
            started_at_ms=started_at_ms,
        )

    def unqueue(self, call: QueuedCall) -> None:
        self._router.unqueue(call)

    def has_function(self, function_id: str) -> bool:
        """Whether a provider of ``function_id`` is on this engine (a worker or a module)."""
        registry = self._registry
        return function_id in registry.functions or function_id in registry.engine_functions

    # --- channels, spans, gauges ---------------------------------------------------------------

    def open_channel(self) -> Channel:
        return self._channels.create()

    def close_channel(self, channel: Channel) -> None:
        self._channels.remove(channel)

    @property
    def observer(self) -> Observer | None:
        """The observability module's hooks while it runs enabled; None otherwise."""
        return self._router.observer

    def span(
        self,
        name: str,
        *,
        kind: str = "internal",
        attributes: dict[str, Any] | None = None,
        traceparent: str | None = None,
    ) -> AbstractContextManager[Span | None]:
        """A span around a block (the current span inside it); no-op without an observer."""
        return tracing.span(
            self._router.observer, name, kind=kind, attributes=attributes, traceparent=traceparent
        )

    @contextmanager
    def observing(self, observer: Observer) -> Iterator[None]:
        """Install the observability hooks for the block's duration."""
        self._router.observer = observer
        try:
            yield
        finally:
            if self._router.observer is observer:
                self._router.observer = None

    def engine_gauges(self) -> EngineGauges:
        return EngineGauges(len(self._router.live), len(self._dispatcher.connections))

    def module_gauges(self) -> list[GaugeFamily]:
        """Every gauge family the running modules report, in the order they were offered."""
        return list(self._offers.gauges.values())

    def http_endpoint(self, path: str) -> HttpEndpoint | None:
        """The GET endpoint a module serves at ``path`` (``/metrics``), if any."""
        return self._offers.http_endpoints.get(path)

    # --- the ports a module listens on ---------------------------------------------------------

    def port_gate(self, port_name: str, max_connections: int, max_per_address: int) -> PortGate:
        """The admission of a port this module listens on: its caps, and the engine's
        descriptor reserve shared with every other port (runtime/connections/admission.py)."""
        return self._port_gate(port_name, max_connections, max_per_address)

    @contextmanager
    def exposing(self, port: ExposedPort) -> Iterator[None]:
        """List a listening port for the startup log while the block runs."""
        self._offers.exposed[port.name] = port
        try:
            yield
        finally:
            _remove(self._offers.exposed, {port.name: port})

    # --- workers' reported metrics ---------------------------------------------------------------

    def worker_metrics(self) -> Iterator[tuple[str, Any]]:
        """(worker id, its latest reported metrics) for every connected worker."""
        for conn in self._dispatcher.connections.values():
            yield conn.worker_id, conn.session.latest_metrics

    def record_worker_metrics(
        self, worker_id: str, values: Mapping[str, Any], *, at_ms: int, limit: int
    ) -> None:
        """Merge a connected worker's latest metric values (at most ``limit`` names; values
        of names it already has are always updated); unknown workers are ignored."""
        conn = self._dispatcher.connections.get(worker_id)
        if conn is not None:
            conn.session.record_metrics(values, at_ms=at_ms, limit=limit)

    # --- what a running module offers ------------------------------------------------------------

    @contextmanager
    def hosting(
        self,
        module: RunningModule,
        *,
        functions: Iterable[EngineFunction],
        trigger_types: Iterable[EngineTriggerType],
        invoke_actions: Mapping[str, InvokeAction],
        http_endpoints: Mapping[str, HttpEndpoint],
        gauges: Iterable[GaugeFamily],
    ) -> Iterator[None]:
        """Offer a module's functions, trigger types, invoke actions, endpoints and gauges
        while the block runs; withdraw them when it ends (a crash included)."""
        offers = self._offers
        actions = self._dispatcher.actions
        families = list(gauges)
        with self._registry.hosting(functions, trigger_types):
            offers.modules[self.name] = module
            actions.update(invoke_actions)
            offers.http_endpoints.update(http_endpoints)
            offers.gauges.update((family.name, family) for family in families)
            try:
                yield
            finally:
                _remove(offers.modules, {self.name: module})
                _remove(actions, invoke_actions)
                _remove(offers.http_endpoints, http_endpoints)
                _remove(offers.gauges, {family.name: family for family in families})


def _remove(table: dict[str, Any], entries: Mapping[str, Any]) -> None:
    """Remove ``entries`` that are still the ones in ``table`` (compare-and-delete: a
    restarted module's new entries are never removed by its predecessor)."""
    for key, value in entries.items():
        if table.get(key) is value:
            del table[key]
