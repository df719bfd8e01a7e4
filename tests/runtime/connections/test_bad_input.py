"""Bad input never hurts another worker (D1): each case on one connection while a
well-behaved worker keeps calling through the same engine."""

from __future__ import annotations

import orjson
import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from iii_trio.runtime.engine import Engine
from tests.support.engine import StartEngine, worker_url
from tests.support.raw_worker import RawWorker, raw_worker
from tests.support.waiting import wait_until

BAD_FRAMES: list[str | bytes] = [
    "this is not json",
    "[1, 2, 3]",
    '"a string"',
    "{}",
    '{"type": "no-such-type", "x": 1}',
    '{"type": "invokefunction"}',
    '{"type": "invokefunction", "function_id": 42, "invocation_id": "x"}',
    '{"type": "registerfunction", "id": ["not", "a", "string"]}',
    '{"type": "registertrigger", "id": "t", "trigger_type": "x", "function_id": "f"}',
    '{"type": "invocationresult", "result": 1}',
    '{"a": ' * 50 + "1" + "}" * 50,
    b"\x00\xff\xfe binary garbage \x80",
    b"OTLP not really otlp",
    "{" * 10000,
]


async def good_call_works(good: RawWorker, target: RawWorker, n: int) -> None:
    await good.invoke("t::echo", {"n": n}, f"good-{n}")
    invoke = await target.expect("invokefunction")
    await target.answer(invoke, invoke["data"]["n"])
    result = await good.expect("invocationresult")
    assert result["result"] == n


@pytest.mark.parametrize("frame", BAD_FRAMES, ids=range(len(BAD_FRAMES)))
async def test_bad_frame_is_dropped_and_everyone_keeps_working(
    engine: Engine, frame: str | bytes, autojump_clock: trio.testing.MockClock
) -> None:
    async with (
        raw_worker(worker_url(engine)) as target,
        raw_worker(worker_url(engine)) as good,
        raw_worker(worker_url(engine)) as bad,
    ):
        await target.register("t::echo")
        await trio.testing.wait_all_tasks_blocked()
        await good_call_works(good, target, 1)
        await bad.send_raw(frame)
        await good_call_works(good, target, 2)
        # The offending connection itself stays open and usable.
        result = await bad.call("engine::functions::list", {})
        assert "t::echo" in [row["function_id"] for row in result["result"]["functions"]]


async def close_code_after_sending(engine: Engine, message: str) -> int:
    """Send one message from a bare wsproto client and return the engine's close code."""
    stream = await trio.open_tcp_stream("127.0.0.1", engine.port)
    client = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(client.send(Request(host="127.0.0.1", target="/")))
    sent = False
    try:
        with trio.fail_after(5):
            while True:
                data = await stream.receive_some(65536)
                assert data, "the engine dropped the connection without a Close frame"
                client.receive_data(data)
                for event in client.events():
                    if isinstance(event, AcceptConnection) and not sent:
                        await stream.send_all(client.send(TextMessage(data=message)))
                        sent = True
                    elif isinstance(event, CloseConnection):
                        await stream.send_all(client.send(event.response()))
                        return int(event.code)
    finally:
        await stream.aclose()


async def test_oversized_frame_closes_only_that_connection_with_1009(
    start_engine: StartEngine,
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = await start_engine(max_message_size=4096)
    async with raw_worker(worker_url(engine)) as target, raw_worker(worker_url(engine)) as good:
        await target.register("t::echo")
        big = {"type": "invokefunction", "function_id": "t::echo", "data": "x" * 5000}
        assert await close_code_after_sending(engine, orjson.dumps(big).decode()) == 1009
        await good_call_works(good, target, 3)


async def test_a_frame_just_under_the_limit_is_accepted(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(max_message_size=4096)
    async with raw_worker(worker_url(engine)) as target, raw_worker(worker_url(engine)) as caller:
        await target.register("t::echo")
        await trio.testing.wait_all_tasks_blocked()
        frame = {
            "type": "invokefunction",
            "function_id": "t::echo",
            "invocation_id": "big",
            "data": "",
        }
        frame["data"] = "x" * (4096 - len(orjson.dumps(frame)))
        await caller.send(frame)
        invoke = await target.expect("invokefunction")
        assert len(invoke["data"]) == len(frame["data"])


async def test_json_ping_gets_pong(engine: Engine, autojump_clock: trio.testing.MockClock) -> None:
    async with raw_worker(worker_url(engine)) as worker:
        await worker.send({"type": "ping"})
        assert await worker.expect("pong") == {"type": "pong"}


async def test_websocket_ping_is_answered(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as worker:
        with trio.fail_after(5):
            await worker.ws.ping(b"are you there")


async def test_an_engine_bug_on_one_frame_costs_only_that_frame(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    # A stand-in for a bug: handling one particular frame raises.
    real_handle = engine.dispatcher.handle_frame

    async def buggy_handle(conn: object, frame: str | bytes) -> None:
        if "trigger-the-bug" in str(frame):
            raise RuntimeError("simulated engine bug")
        await real_handle(conn, frame)  # type: ignore[arg-type]

    monkeypatch.setattr(engine.dispatcher, "handle_frame", buggy_handle)
    async with raw_worker(worker_url(engine)) as target, raw_worker(worker_url(engine)) as good:
        await target.register("t::echo")
        await good.send({"type": "ping", "x": "trigger-the-bug"})
        await good_call_works(good, target, 1)


async def test_a_failing_connection_actor_leaves_the_others_alone(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as target, raw_worker(worker_url(engine)) as good:
        await target.register("t::echo")
        # A stand-in for a bug in the connection actor: the disconnect cleanup raises once.
        real_disconnected = engine.dispatcher.disconnected
        calls = []

        def buggy_disconnected(conn: object) -> None:
            calls.append(conn)
            real_disconnected(conn)  # type: ignore[arg-type]
            if len(calls) == 1:
                raise RuntimeError("simulated cleanup bug")

        monkeypatch.setattr(engine.dispatcher, "disconnected", buggy_disconnected)
        async with raw_worker(worker_url(engine)):
            pass
        await wait_until(lambda: calls, what="the disconnect cleanup ran")
        await good_call_works(good, target, 2)  # the listener and its connections survived
        async with raw_worker(worker_url(engine)) as newcomer:  # and it still accepts
            assert newcomer.worker_id
