"""The stream port is inside the trust boundary (issue 16 item 6): the engine's token at the
upgrade, guards that fail closed, bounded subscriptions. Real sockets, a real engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed

from iii_trio.runtime.engine import Engine
from iii_trio.sdk import III
from tests.runtime.modules.stream.support import stream_client, stream_entry, stream_port
from tests.support.engine import StartEngine, worker_url
from tests.support.raw_worker import raw_worker
from tests.support.waiting import wait_until
from tests.support.ws import upgrade_status

TOKEN = "stream-s3cret"
ITEM = {"stream_name": "chat", "group_id": "room", "item_id": "m1", "data": {"text": "hi"}}


async def test_stream_port_requires_the_engine_token(start_engine: StartEngine) -> None:
    engine = await start_engine(auth_token=TOKEN, modules=(stream_entry(),))
    port = stream_port(engine)
    await engine.router.call("stream::set", ITEM, caller_module="test")
    assert await upgrade_status(port, "/") == 401  # anonymous: it read items before
    assert await upgrade_status(port, "/", {"Authorization": "Bearer wrong"}) == 401
    async with stream_client(port, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        await client.join("s1", "chat", "room")
        [(_, event)] = await client.events(1)
        assert event == {"type": "sync", "data": [{"text": "hi"}]}
    assert engine.modules["stream"].introspect()["clients_refused"] == 2


async def test_stream_auth_function_fails_closed(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    """An unregistered auth function, one that raises and one that does not answer in
    time all refuse the client; before, each of them admitted it without context."""
    engine = await start_engine(modules=(stream_entry(auth_function="auth::check"),))
    port = stream_port(engine)
    assert await upgrade_status(port, "/") == 503  # not registered (yet)
    async with _guard(engine, "auth::check") as behaviour:
        behaviour["mode"] = "raise"
        assert await upgrade_status(port, "/") == 401
        behaviour["mode"] = "hang"
        assert await upgrade_status(port, "/") == 503  # guard_timeout_ms (5 s) passed
        behaviour["mode"] = "allow"
        async with stream_client(port, "/?user=ann") as client:
            await client.join("s1", "chat", "room")
            assert (await client.events(1))[0][1]["type"] == "sync"
    assert engine.modules["stream"].introspect()["clients_refused"] == 3


@pytest.mark.parametrize("failure", ["raise", "hang"])
async def test_stream_join_guards_fail_closed(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock, failure: str
) -> None:
    """A join binding that raises or does not answer within guard_timeout_ms refuses the
    join (before, it was skipped and the join admitted)."""
    engine = await start_engine(modules=(stream_entry(),))
    await engine.router.call("stream::set", ITEM, caller_module="test")
    async with _guard(engine, "auth::join", trigger="stream:join") as behaviour:
        behaviour["mode"] = failure
        async with stream_client(stream_port(engine)) as client:
            await client.join("s1", "chat", "room")
            assert await client.events(1) == [(None, {"type": "unauthorized"})]
            changed = {**ITEM, "data": {"text": "secret"}}
            await engine.router.call("stream::set", changed, caller_module="test")
            behaviour["mode"] = "allow"
            await client.join("s2", "chat", "room", "m1")
            # Nothing of the refused subscription arrived: the next message is s2's sync.
            sync = {"type": "sync", "data": {"text": "secret"}}
            assert await client.events(1) == [("m1", sync)]


async def test_a_join_guard_nobody_provides_refuses_the_join(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(stream_entry(),))
    async with raw_worker(worker_url(engine)) as worker:
        await worker.send(
            {
                "type": "registertrigger",
                "id": "guard",
                "trigger_type": "stream:join",
                "function_id": "auth::nobody",
                "config": {},
            }
        )
        module: Any = engine.modules["stream"]
        await wait_until(lambda: module.introspect()["join_bindings"] == 1, what="bound")
        async with stream_client(stream_port(engine)) as client:
            await client.join("s1", "chat", "room")
            assert await client.events(1) == [(None, {"type": "unauthorized"})]


async def test_a_client_cannot_hold_unbounded_subscriptions(
    start_engine: StartEngine,
) -> None:
    engine = await start_engine(modules=(stream_entry(max_subscriptions_per_client=3),))
    async with stream_client(stream_port(engine)) as client:
        for n in range(3):
            await client.join(f"s{n}", "chat", f"room{n}")
            await client.events(1)
        await client.join("s0", "chat", "room0")  # the same id again replaces: allowed
        await client.events(1)
        await client.join("s3", "chat", "room3")
        with pytest.raises(ConnectionClosed) as closed:
            await client.receive()
    assert closed.value.reason.code == 1008
    await wait_until(
        lambda: engine.modules["stream"].introspect()["subscriptions"] == 0,
        what="the client's subscriptions are gone",
    )


@asynccontextmanager
async def _guard(
    engine: Engine, function_id: str, *, trigger: str | None = None
) -> AsyncIterator[dict[str, Any]]:
    """A worker providing one guard function; the test switches ``behaviour["mode"]``
    between ``allow``, ``raise`` and ``hang``."""
    behaviour: dict[str, Any] = {"mode": "allow"}
    iii = III(worker_url(engine), worker_name="guard")

    @iii.function(id=function_id)
    async def guard(data: dict[str, Any]) -> Any:
        mode = behaviour["mode"]
        if mode == "raise":
            raise RuntimeError("no entry")
        if mode == "hang":
            await trio.sleep(3600)
        return {"context": {"ok": True}} if trigger is None else {"unauthorized": False}

    if trigger is not None:
        iii.register_trigger(trigger, function_id, {})
    async with iii.connect():
        module: Any = engine.modules["stream"]
        if trigger is not None:
            await wait_until(lambda: module.introspect()["join_bindings"] == 1, what="bound")
        else:
            await wait_until(lambda: function_id in engine.registry.functions, what="registered")
        yield behaviour
