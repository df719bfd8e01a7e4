"""A restarted module gets every live binding of its trigger types back (issue 16, item 2).

Each test runs a real engine with one real module, bound to by a real worker (trio SDK) over
the worker port, then crashes the module once: its kind here is the real kind whose factory
makes the real module and, for the first incarnation only, wraps ``serve`` so that it raises
when the test says so (:class:`CrashOnCue`). The supervisor then restarts the module with a
fresh incarnation, and the binding must fire again: the route answers, the state and stream
triggers fire, the queue and pubsub deliver, cron fires on schedule, the log trigger
delivers. Before the fix every trigger type came back empty (404 for every route) while
``engine::triggers::list`` still listed the bindings.
"""

from __future__ import annotations

from calendar import timegm
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio
import trio.testing

from iii_trio.runtime.config.loading import ModuleEntry
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules import catalog
from iii_trio.runtime.modules.base import EngineModule
from iii_trio.runtime.modules.cron.config import CronConfig
from iii_trio.runtime.modules.kind import ModuleKind
from iii_trio.runtime.modules.pubsub.config import PubSubConfig
from iii_trio.runtime.modules.queue.config import QueueConfig
from iii_trio.runtime.modules.state.config import StateConfig
from iii_trio.sdk import III
from tests.runtime.modules.observability.support import otel_entry
from tests.runtime.modules.rest_api.support import client, http_entry
from tests.runtime.modules.stream.support import stream_entry
from tests.support.engine import StartEngine, worker_url
from tests.support.raw_worker import raw_worker
from tests.support.waiting import wait_until


class CrashOnCue:
    """The real kind of ``name``; its first incarnation raises once :meth:`crash` is called.

    ``prepare`` runs on every incarnation as it is made (the cron test ties each one's wall
    clock to trio's); ``hold_restart``, when given, keeps the second incarnation from
    reporting ready until it is set, so a test can act while the module is down."""

    def __init__(
        self,
        name: str,
        *,
        prepare: Callable[[Any], None] | None = None,
        hold_restart: trio.Event | None = None,
    ) -> None:
        real = catalog.kind(name)
        assert real is not None
        assert real.create is not None
        self.name = name
        self._create_real = real.create
        self.kind: ModuleKind = attrs.evolve(real, create=self._create)
        self.incarnations: list[EngineModule] = []
        self._prepare = prepare
        self._hold_restart = hold_restart
        self._cue = trio.Event()

    @property
    def kinds(self) -> dict[str, ModuleKind]:
        return {self.name: self.kind}

    def _create(self, ctx: Any, entry: ModuleEntry) -> EngineModule:
        module = self._create_real(ctx, entry)
        self.incarnations.append(module)
        if self._prepare is not None:
            self._prepare(module)
        if len(self.incarnations) == 1:
            module.serve = self._until_cued(module.serve, self._cue)  # type: ignore[method-assign]
        elif len(self.incarnations) == 2 and self._hold_restart is not None:
            module.serve = self._until_cued(module.serve, self._hold_restart, crash=False)  # type: ignore[method-assign]
        return module

    @staticmethod
    def _until_cued(
        serve: Callable[..., Awaitable[None]], cue: trio.Event, *, crash: bool = True
    ) -> Callable[..., Awaitable[None]]:
        async def wrapped(task_status: trio.TaskStatus[Any]) -> None:
            if not crash:  # held: ready only once cued
                await cue.wait()
                await serve(task_status)
                return
            async with trio.open_nursery() as nursery:
                await nursery.start(serve)
                task_status.started()
                await cue.wait()
                raise RuntimeError("crashed on cue (a test of restarts)")

        return wrapped

    async def crash(self, engine: Engine) -> EngineModule:
        """Crash the first incarnation; the second one once it runs and offers its types."""
        first = self.incarnations[0]
        self._cue.set()
        if self._hold_restart is not None:
            await wait_until(lambda: len(self.incarnations) == 2, what="the restart has begun")
            return self.incarnations[1]
        return await self.restarted(engine, first)

    async def restarted(self, engine: Engine, first: EngineModule | None = None) -> EngineModule:
        first = first or self.incarnations[0]

        def running() -> bool:
            module = self.incarnations[-1]
            return module is not first and all(
                engine.registry.engine_types.get(t.id) is t for t in module.trigger_types()
            )

        await wait_until(running, what=f"{self.name} is restarted and offers its trigger types")
        return self.incarnations[-1]


class Calls:
    """What a worker's function received, in order."""

    def __init__(self) -> None:
        self.received: list[Any] = []

    async def handler(self, data: Any) -> Any:
        self.received.append(data)
        return {"status_code": 200, "body": {"n": len(self.received)}}

    async def wait_for(self, count: int, *, timeout: float = 10) -> None:
        await wait_until(
            lambda: len(self.received) >= count, what=f"{count} call(s) arrived", timeout=timeout
        )


async def bound(engine: Engine, count: int = 1) -> None:
    await wait_until(lambda: len(engine.registry.bindings) == count, what=f"{count} binding(s)")


def entry(name: str, declared: str, config: Any) -> ModuleEntry:
    return ModuleEntry(name, declared, "modules[0]", config)


async def test_restarts_keep_http_routes(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    crashing = CrashOnCue("rest_api")
    engine = await start_engine(modules=(http_entry(),), kinds=crashing.kinds)
    calls = Calls()
    worker = III(worker_url(engine), worker_name="api")
    worker.register_function("api::hello", calls.handler)
    worker.register_trigger("http", "api::hello", {"api_path": "hello"})
    async with worker.connect():
        await bound(engine)
        async with client(engine) as http:
            assert (await http.get("/hello")).status_code == 200
        await crashing.crash(engine)  # the new incarnation listens on a port of its own
        async with client(engine) as http:
            response = await http.get("/hello")
        assert (response.status_code, response.json()) == (200, {"n": 2})


async def test_restarts_keep_state_triggers(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    crashing = CrashOnCue("state")
    config = entry("state", "modules::state::StateModule", StateConfig())
    engine = await start_engine(modules=(config,), kinds=crashing.kinds)
    calls = Calls()
    worker = III(worker_url(engine), worker_name="watcher")
    worker.register_function("watch::orders", calls.handler)
    worker.register_trigger("state", "watch::orders", {"scope": "orders"})
    async with worker.connect():
        await bound(engine)
        await crashing.crash(engine)
        await worker.trigger("state::set", {"scope": "orders", "key": "o1", "value": 1})
        await calls.wait_for(1)
    assert calls.received[0]["event_type"] == "state:created"


async def test_restarts_keep_stream_triggers(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    crashing = CrashOnCue("stream")
    engine = await start_engine(modules=(stream_entry(),), kinds=crashing.kinds)
    calls = Calls()
    worker = III(worker_url(engine), worker_name="watcher")
    worker.register_function("watch::chat", calls.handler)
    worker.register_trigger("stream", "watch::chat", {"stream_name": "chat"})
    async with worker.connect():
        await bound(engine)
        await crashing.crash(engine)
        item = {"stream_name": "chat", "group_id": "g", "item_id": "m1", "data": {"t": 1}}
        await worker.trigger("stream::set", item)
        await calls.wait_for(1)
    assert calls.received[0]["event"]["type"] == "create"


async def test_restarts_keep_queue_subscriptions(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    crashing = CrashOnCue("queue")
    config = entry("queue", "modules::queue::QueueModule", QueueConfig())
    engine = await start_engine(modules=(config,), kinds=crashing.kinds)
    calls = Calls()
    worker = III(worker_url(engine), worker_name="consumer")
    worker.register_function("jobs::work", calls.handler)
    worker.register_trigger("queue", "jobs::work", {"topic": "jobs"})
    async with worker.connect():
        await bound(engine)
        await crashing.crash(engine)
        await worker.trigger("enqueue", {"topic": "jobs", "data": {"n": 1}})
        await calls.wait_for(1)
    assert calls.received == [{"n": 1}]


async def test_restarts_keep_cron_schedules(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    base = timegm((2026, 1, 1, 0, 0, 0))

    def wall_clock_from_trio(module: Any) -> None:
        module.clock = lambda: base + trio.current_time()

    crashing = CrashOnCue("cron", prepare=wall_clock_from_trio)
    config = entry("cron", "modules::cron::CronModule", CronConfig())
    engine = await start_engine(modules=(config,), kinds=crashing.kinds)
    calls = Calls()
    worker = III(worker_url(engine), worker_name="scheduled")
    worker.register_function("cron::tick", calls.handler)
    worker.register_trigger("cron", "cron::tick", {"expression": "*/5 * * * *"})
    async with worker.connect():
        await bound(engine)
        await calls.wait_for(1, timeout=600)
        await crashing.crash(engine)
        await calls.wait_for(2, timeout=600)
    ticks = [call["scheduled_time"] for call in calls.received]
    assert ticks[0] == "2026-01-01T00:05:00Z"
    assert ticks[1] > ticks[0]


async def test_restarts_keep_pubsub_subscriptions(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    crashing = CrashOnCue("pubsub")
    config = entry("pubsub", "modules::pubsub::PubSubModule", PubSubConfig())
    engine = await start_engine(modules=(config,), kinds=crashing.kinds)
    calls = Calls()
    worker = III(worker_url(engine), worker_name="subscriber")
    worker.register_function("news::read", calls.handler)
    worker.register_trigger("subscribe", "news::read", {"topic": "news"})
    async with worker.connect():
        await bound(engine)
        await crashing.crash(engine)
        await worker.trigger("publish", {"topic": "news", "data": "hi"})
        await calls.wait_for(1)
    assert calls.received == ["hi"]


async def test_restarts_keep_log_triggers(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    crashing = CrashOnCue("observability")
    engine = await start_engine(modules=(otel_entry(),), kinds=crashing.kinds)
    calls = Calls()
    worker = III(worker_url(engine), worker_name="watcher")
    worker.register_function("watch::logs", calls.handler)
    worker.register_trigger("log", "watch::logs", {"level": "warn"})
    async with worker.connect():
        await bound(engine)
        await crashing.crash(engine)
        await worker.trigger("engine::log::warn", {"message": "after the restart"})
        await calls.wait_for(1)
    assert calls.received[0]["body"] == "after the restart"


async def test_bindings_made_while_a_module_is_down_are_bound_or_refused_when_it_is_back(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    """While the module restarts, new bindings of its types park in the registry; the new
    incarnation binds them, and a config it refuses reaches its owner as a refusal."""
    held = trio.Event()
    crashing = CrashOnCue("rest_api", hold_restart=held)
    engine = await start_engine(modules=(http_entry(),), kinds=crashing.kinds)
    try:
        async with raw_worker(worker_url(engine)) as worker:
            await worker.register("api::hello")
            await crashing.crash(engine)  # down until `held` is set
            assert not engine.registry.is_engine_type("http")
            for binding_id, config in (("late", {"api_path": "late"}), ("bad", {"path": "x"})):
                frame = {"type": "registertrigger", "id": binding_id, "trigger_type": "http"}
                await worker.send(frame | {"function_id": "api::hello", "config": config})
            await bound(engine, 2)  # both parked
            held.set()
            await crashing.restarted(engine)
            refusal = await worker.expect("triggerregistrationresult")
            assert (refusal["id"], refusal["error"]["code"]) == (
                "bad",
                "trigger_registration_failed",
            )
            assert "api_path" in refusal["error"]["message"]
            assert [b.id for b in engine.registry.bindings.values()] == ["late"]
            async with client(engine) as http, trio.open_nursery() as nursery:

                async def serve_one() -> None:
                    invoke = await worker.expect("invokefunction")
                    await worker.answer(invoke, {"status_code": 200, "body": "late"})

                nursery.start_soon(serve_one)
                response = await http.get("/late")
            assert (response.status_code, response.json()) == (200, "late")
    finally:
        held.set()  # a failing check must not leave the engine waiting for the module
