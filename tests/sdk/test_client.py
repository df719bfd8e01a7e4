"""The trio SDK against a real engine on a loopback port."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from iii_trio.runtime.config.loading import EngineConfig
from iii_trio.runtime.engine import Engine
from iii_trio.sdk import III, InvocationContext, InvocationError
from iii_trio.sdk.client import Binding
from tests.support.engine import worker_url
from tests.support.waiting import wait_until


def client(engine_or_url: Engine | str, name: str, **kwargs: Any) -> III:
    url = engine_or_url if isinstance(engine_or_url, str) else worker_url(engine_or_url)
    kwargs.setdefault("shutdown_timeout", 1.0)
    return III(url, worker_name=name, reconnect_initial=0.05, reconnect_max=0.2, **kwargs)


async def registered(engine: Engine, *function_ids: str) -> None:
    await wait_until(
        lambda: all(f in engine.registry.functions for f in function_ids),
        what=f"{', '.join(function_ids)} registered",
    )


@pytest.fixture
async def server(engine: Engine) -> AsyncIterator[III]:
    """A worker providing a few functions."""
    iii = client(engine, "server")

    @iii.function(id="s::echo", description="echo")
    async def echo(data: Any) -> Any:
        return data

    @iii.function(id="s::boom")
    async def boom(data: Any) -> Any:
        raise ValueError("kaboom")

    @iii.function(id="s::thread")
    def in_thread(data: Any) -> Any:
        return {"main": threading.current_thread() is threading.main_thread()}

    @iii.function(id="s::context")
    async def with_context(data: Any, ctx: InvocationContext) -> Any:
        return {"id": ctx.invocation_id, "caller": ctx.caller, "function": ctx.function_id}

    @iii.function(id="s::slow")
    async def slow(data: Any) -> Any:
        await trio.sleep(data["seconds"])
        return "slow done"

    async with iii.connect():
        await registered(engine, "s::echo", "s::boom", "s::thread", "s::context", "s::slow")
        yield iii


async def test_call_another_worker(
    engine: Engine, server: III, autojump_clock: trio.testing.MockClock
) -> None:
    async with client(engine, "caller").connect() as caller:
        result = await caller.trigger("s::echo", {"x": 1})
    assert result == {"x": 1, "_caller_worker_id": caller.worker_id}


async def test_handler_errors_arrive_typed_with_a_stacktrace(
    engine: Engine, server: III, autojump_clock: trio.testing.MockClock
) -> None:
    async with client(engine, "caller").connect() as caller:
        with pytest.raises(InvocationError) as info:
            await caller.trigger("s::boom", {})
    assert info.value.code == "invocation_failed"
    assert info.value.message == "kaboom"
    assert info.value.stacktrace is not None
    assert "ValueError: kaboom" in info.value.stacktrace


async def test_unknown_function(
    engine: Engine, server: III, autojump_clock: trio.testing.MockClock
) -> None:
    async with client(engine, "caller").connect() as caller:
        with pytest.raises(InvocationError) as info:
            await caller.trigger("nope::x", {})
    assert info.value.code == "function_not_found"


async def test_sync_handlers_run_in_a_worker_thread(engine: Engine, server: III) -> None:
    async with client(engine, "caller").connect() as caller:
        assert await caller.trigger("s::thread", {}) == {"main": False}


async def test_the_optional_second_parameter_is_the_context(
    engine: Engine, server: III, autojump_clock: trio.testing.MockClock
) -> None:
    async with client(engine, "caller").connect() as caller:
        result = await caller.trigger("s::context", {})
    assert result["caller"] == caller.worker_id
    assert result["function"] == "s::context"
    assert result["id"]


async def test_client_timeout_then_the_next_call_works(
    engine: Engine, server: III, autojump_clock: trio.testing.MockClock
) -> None:
    async with client(engine, "caller").connect() as caller:
        with pytest.raises(InvocationError) as info:
            await caller.trigger("s::slow", {"seconds": 0.5}, timeout=0.2)
        assert info.value.code == "timeout"
        assert await caller.trigger("s::echo", "after", timeout=5) == "after"


async def test_trigger_void_runs_the_target(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    seen = trio.Event()
    target = client(engine, "target")

    @target.function(id="t::mark")
    async def mark(data: Any) -> None:
        seen.set()

    async with target.connect(), client(engine, "caller").connect() as caller:
        await registered(engine, "t::mark")
        await caller.trigger_void("t::mark", {})
        with trio.fail_after(5):
            await seen.wait()


async def test_listings(
    engine: Engine, server: III, autojump_clock: trio.testing.MockClock
) -> None:
    functions = {row["function_id"] for row in await server.list_functions()}
    assert {"s::echo", "s::boom"} <= functions
    workers = {row["name"] for row in await server.list_workers()}
    assert "server" in workers
    handle = server.register_trigger("ntype", "s::echo", {"topic": "t"})
    with trio.fail_after(5):
        while handle.id not in [row["id"] for row in await server.list_triggers()]:
            await trio.sleep(0.01)
    handle.unregister()
    with trio.fail_after(5):
        while await server.list_triggers():
            await trio.sleep(0.01)


async def test_reconnects_after_an_engine_restart_and_replays(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    first = Engine(EngineConfig(port=0, host="127.0.0.1"))
    async with trio.open_nursery() as first_nursery:
        await first_nursery.start(first.run)
        port = first.port
        worker = client(f"ws://127.0.0.1:{port}/", "replayer")

        @worker.function(id="r::echo")
        async def echo(data: Any) -> Any:
            return data

        handle = worker.register_trigger("ntype", "r::echo", {"k": 1})
        async with worker.connect():
            await registered(first, "r::echo")
            first_nursery.cancel_scope.cancel()
            await trio.sleep(0.1)  # the worker notices and starts retrying
            second: Engine = await nursery.start(
                Engine(EngineConfig(port=port, host="127.0.0.1")).run
            )
            await registered(second, "r::echo")
            async with client(second, "caller").connect() as caller:
                assert await caller.trigger("r::echo", "again") == "again"
                triggers = await caller.list_triggers()
            assert [t["id"] for t in triggers] == [handle.id]  # same trigger id


async def test_reconnects_after_a_clean_close(
    engine: Engine, server: III, autojump_clock: trio.testing.MockClock
) -> None:
    first_id = server.worker_id
    engine.connections[str(first_id)].request_stop()  # the engine closes the socket cleanly
    with trio.fail_after(10):
        while server.worker_id == first_id or "s::echo" not in engine.registry.functions:
            await trio.sleep(0.01)
    async with client(engine, "caller").connect() as caller:
        assert await caller.trigger("s::echo", 1) == 1


async def test_connect_leaves_no_tasks_behind(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    before = len(trio.lowlevel.current_task().child_nurseries)
    async with client(engine, "brief").connect():
        pass
    assert len(trio.lowlevel.current_task().child_nurseries) == before


async def test_trigger_with_actions(
    engine: Engine, server: III, autojump_clock: trio.testing.MockClock
) -> None:
    async with client(engine, "caller").connect() as caller:
        assert await caller.trigger("s::echo", {}, action="void") is None
        with pytest.raises(InvocationError) as info:
            await caller.trigger("s::echo", {}, action={"type": "enqueue", "queue": "jobs"})
        assert info.value.code == "enqueue_error"  # no QueueModule in this engine yet
        with pytest.raises(ValueError, match="unknown action"):
            await caller.trigger("s::echo", {}, action="later")


class RecordingType:
    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.events: list[tuple[str, Binding]] = []
        self.changed = trio.Event()

    async def register_trigger(self, binding: Binding) -> None:
        self.events.append(("register", binding))
        self.changed.set()
        if self.refuse:
            raise ValueError("not this topic")

    async def unregister_trigger(self, binding: Binding) -> None:
        self.events.append(("unregister", binding))
        self.changed.set()


async def next_event(handler: RecordingType) -> tuple[str, Binding]:
    with trio.fail_after(5):
        while not handler.events:
            handler.changed = trio.Event()
            await handler.changed.wait()
    return handler.events.pop(0)


async def test_worker_provided_trigger_type(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    handler = RecordingType()
    provider = client(engine, "provider")
    provider.register_trigger_type("ntype", handler, description="custom")
    async with provider.connect(), client(engine, "owner").connect() as owner:
        handle = owner.register_trigger("ntype", "p::echo", {"topic": "t1"})
        kind, binding = await next_event(handler)
        assert kind == "register"
        assert binding == Binding(handle.id, "p::echo", {"topic": "t1"})
        handle.unregister()
        kind, binding = await next_event(handler)
        assert (kind, binding.id) == ("unregister", handle.id)


async def test_refused_bindings_are_reported_to_the_engine(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    provider = client(engine, "provider")
    provider.register_trigger_type("ntype", RecordingType(refuse=True))
    async with provider.connect(), client(engine, "owner").connect() as owner:
        handle = owner.register_trigger("ntype", "p::echo", {"topic": "nope"})
        with trio.fail_after(5):
            while True:
                binding = engine.registry.bindings.get((str(owner.worker_id), handle.id))
                if binding is not None and binding.refused_by:
                    break
                await trio.sleep(0.01)


async def test_shutdown_lets_running_handlers_answer(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    worker = client(engine, "draining", shutdown_timeout=5.0)
    started = trio.Event()

    @worker.function(id="d::slow")
    async def slow(data: Any) -> Any:
        started.set()
        await trio.sleep(0.3)
        return "finished"

    results: list[Any] = []
    async with client(engine, "caller").connect() as caller:
        async with trio.open_nursery() as nursery:
            async with worker.connect():
                await registered(engine, "d::slow")

                async def call() -> None:
                    results.append(await caller.trigger("d::slow", {}))

                nursery.start_soon(call)
                await started.wait()
            # connect() returned only after the handler answered.
    assert results == ["finished"]
    assert "d::slow" not in engine.registry.functions


async def test_reconnects_after_an_abrupt_drop(
    engine: Engine, server: III, autojump_clock: trio.testing.MockClock
) -> None:
    first_id = server.worker_id
    conn = engine.connections[str(first_id)]
    await conn.ws.stream.aclose()  # TCP gone, no closing handshake
    with trio.fail_after(10):
        while server.worker_id == first_id or "s::echo" not in engine.registry.functions:
            await trio.sleep(0.01)
    async with client(engine, "caller").connect() as caller:
        assert await caller.trigger("s::echo", 2) == 2


async def test_a_result_that_is_not_json_fails_the_call_at_once(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    worker = client(engine, "odd")

    @worker.function(id="odd::set")
    async def odd_set(data: Any) -> Any:
        return {1, 2}  # a set has no JSON form

    async with worker.connect(), client(engine, "caller").connect() as caller:
        with trio.fail_after(5):  # an answer, not the caller's timeout
            with pytest.raises(InvocationError) as info:
                await caller.trigger("odd::set", {})
    assert info.value.code == "invocation_failed"
    assert "not JSON" in info.value.message
