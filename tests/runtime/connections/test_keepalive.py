"""Keepalive with idle timeouts on upgraded sockets (issue 16 item 10): a peer that does not
answer the engine's pings is closed; one that answers, or whose answer the engine is not
reading yet, is kept. Real sockets, the autojump clock for the minutes that pass."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from iii_trio.runtime.engine import Engine
from iii_trio.runtime.wire import frames
from iii_trio.runtime.wire.handshake import upgrade
from iii_trio.sdk import III
from tests.runtime.modules.stream.support import stream_client, stream_entry, stream_port
from tests.support.engine import StartEngine, worker_url
from tests.support.raw_worker import raw_worker
from tests.support.waiting import wait_until

INTERVAL_MS = 10_000
TIMEOUT_MS = 10_000
FAST = {"keepalive_interval": INTERVAL_MS, "keepalive_timeout": TIMEOUT_MS}


async def silent_peer(port: int, path: str) -> list[Any]:
    """Upgrade, then never answer anything: the frames the engine sent until it closed."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        received = await upgrade(stream, f"127.0.0.1:{port}", path, [])
        parser = frames.FrameParser(1 << 20, masked=False)
        events = list(parser.feed(received))
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return events
            events += parser.feed(bytes(data))
    finally:
        await stream.aclose()


def _closed_by_keepalive(events: list[Any]) -> bool:
    pings = [e for e in events if isinstance(e, frames.Ping)]
    closes = [e for e in events if isinstance(e, frames.Close)]
    return bool(pings) and [c.code for c in closes] == [1011]


async def test_silent_worker_is_closed_and_cleaned_up(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(**FAST)
    with trio.fail_after(120):
        events = await silent_peer(_port(engine), "/")
    assert _closed_by_keepalive(events)
    await wait_until(lambda: not engine.connections, what="the worker's cleanup ran")
    assert trio.current_time() >= (INTERVAL_MS + TIMEOUT_MS) / 1000


async def test_silent_otel_and_channel_sockets_are_closed(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(**FAST)
    channel = engine.channels.create_for_worker(None)
    query = f"?key={channel.access_key}"
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            results: dict[str, list[Any]] = {}

            async def watch(path: str) -> None:
                results[path] = await silent_peer(_port(engine), path)

            for path in ("/otel", f"/ws/channels/{channel.id}{query}&dir=write"):
                nursery.start_soon(watch, path)
    assert all(_closed_by_keepalive(events) for events in results.values()), results


async def test_silent_channel_reader_is_closed(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(**FAST)
    channel = engine.channels.create_for_worker(None)
    path = f"/ws/channels/{channel.id}?key={channel.access_key}&dir=read"
    with trio.fail_after(120):
        events = await silent_peer(_port(engine), path)
    assert _closed_by_keepalive(events)
    assert channel.id not in engine.channels.channels


async def test_silent_stream_client_is_closed(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(**FAST, modules=(stream_entry(),))
    with trio.fail_after(120):
        events = await silent_peer(stream_port(engine), "/")
    assert _closed_by_keepalive(events)
    stats = engine.modules["stream"].introspect()
    assert (stats["clients"], stats["closed_by_keepalive"]) == (0, 1)


async def test_peers_that_answer_pings_stay_connected(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(**FAST, modules=(stream_entry(),))
    async with raw_worker(worker_url(engine)) as worker, stream_client(stream_port(engine)):
        await trio.sleep(20 * (INTERVAL_MS + TIMEOUT_MS) / 1000)  # idle, answering pings
        assert "result" in await worker.call("engine::functions::list", {})
        assert engine.modules["stream"].introspect()["clients"] == 1
    iii = III(worker_url(engine), worker_name="trio-sdk")
    async with iii.connect():  # the trio SDK answers pings too
        await trio.sleep(10 * (INTERVAL_MS + TIMEOUT_MS) / 1000)
        assert len(engine.connections) == 1
        assert await iii.trigger("engine::functions::list", {}) is not None


async def test_a_client_the_engine_is_not_reading_is_not_judged(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    """While a join is being authorised the engine does not read the client; its answers
    to pings wait in the kernel, which is proof enough that it is alive."""
    engine = await start_engine(**FAST, modules=(stream_entry(guard_timeout_ms=600_000),))
    guard = III(worker_url(engine), worker_name="guard")

    @guard.function(id="auth::slow_join")
    async def slow_join(data: dict[str, Any]) -> Any:
        await trio.sleep(10 * (INTERVAL_MS + TIMEOUT_MS) / 1000)
        return {"unauthorized": False}

    guard.register_trigger("stream:join", "auth::slow_join", {})
    async with guard.connect():
        module: Any = engine.modules["stream"]
        await wait_until(lambda: module.introspect()["join_bindings"] == 1, what="bound")
        async with stream_client(stream_port(engine)) as client:
            await client.join("s1", "chat", "room")
            message = await client.receive(seconds=10 * (INTERVAL_MS + TIMEOUT_MS))
            assert message["event"] == {"type": "sync", "data": []}
        assert module.introspect()["closed_by_keepalive"] == 0


async def test_keepalive_interval_zero_turns_it_off(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(keepalive_interval=0)
    stream = await trio.open_tcp_stream("127.0.0.1", _port(engine))
    try:
        await upgrade(stream, "x", "/", [])
        with trio.move_on_after(3600):
            data = await stream.receive_some(65536)  # workerregistered, then nothing
            assert b"workerregistered" in data
            await stream.receive_some(65536)
            raise AssertionError("the engine sent something more")
        assert len(engine.connections) == 1
    finally:
        await stream.aclose()


def _port(engine: Engine) -> int:
    assert engine.port is not None
    return engine.port
