"""Streamed HTTP bodies through the request's channels, and the graceful drain (§3.3-3.5).

Handlers reach the ``request_body`` / ``response`` channels on the engine's channel endpoint
with a real WebSocket, as the official SDKs do; the Node case runs the official npm SDK's
``http((req, res) => ...)`` helper in a real worker process.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketConnection

from iii_trio.runtime.engine import Engine
from iii_trio.sdk import III
from tests.conformance.harness import sdk_worker
from tests.runtime.modules.rest_api.support import base_url, client, http_entry, routed
from tests.support.engine import StartEngine, worker_url
from tests.support.waiting import wait_until
from tests.support.ws import open_ws


def channel_url(engine: Engine, ref: dict[str, Any]) -> str:
    path = f"/ws/channels/{ref['channel_id']}?key={ref['access_key']}&dir={ref['direction']}"
    return worker_url(engine, path)


async def read_all(engine: Engine, ref: dict[str, Any]) -> list[str | bytes]:
    frames: list[str | bytes] = []
    async with open_ws(channel_url(engine, ref), max_message_size=1 << 22) as ws:
        try:
            while True:
                frames.append(await ws.get_message())
        except ConnectionClosed:
            return frames


async def control(ws: WebSocketConnection, **message: Any) -> None:
    await ws.send_message(orjson.dumps(message).decode())


@pytest.fixture
async def engine(start_engine: StartEngine) -> Engine:
    return await start_engine(modules=(http_entry(default_timeout=5000, body_limit=300_000),))


async def upload_chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_a_raw_body_streams_into_the_request_body_channel(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    worker = III(worker_url(engine), worker_name="api")
    seen: dict[str, Any] = {}

    @worker.function(id="api::upload")
    async def upload(request: dict[str, Any]) -> Any:
        seen["body"] = request["body"]
        frames = await read_all(engine, request["request_body"])
        data = b"".join(f for f in frames if isinstance(f, bytes))
        return {"body": {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}}

    worker.register_trigger("http", "api::upload", {"api_path": "upload", "http_method": "POST"})
    parts = [bytes([n]) * 50_000 for n in range(5)]  # chunked: no Content-Length
    async with worker.connect(), client(engine) as http:
        await routed(engine, 1)
        response = await http.post(
            "/upload", content=upload_chunks(parts), headers={"content-type": "image/png"}
        )
    whole = b"".join(parts)
    assert response.status_code == 200
    assert response.json() == {"bytes": len(whole), "sha256": hashlib.sha256(whole).hexdigest()}
    assert seen["body"] is None  # a non-JSON body is not parsed into `body`


async def test_a_json_body_leaves_the_request_body_channel_empty(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    worker = III(worker_url(engine), worker_name="api")

    @worker.function(id="api::json")
    async def json_route(request: dict[str, Any]) -> Any:
        frames = await read_all(engine, request["request_body"])
        return {"body": {"parsed": request["body"], "frames": len(frames)}}

    worker.register_trigger("http", "api::json", {"api_path": "json", "http_method": "POST"})
    async with worker.connect(), client(engine) as http:
        await routed(engine, 1)
        response = await http.post("/json", json={"a": 1})
    assert response.json() == {"parsed": {"a": 1}, "frames": 0}


async def test_a_streamed_body_past_body_limit_gets_413(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    worker = III(worker_url(engine), worker_name="api")
    read: list[int] = []

    @worker.function(id="api::upload")
    async def upload(request: dict[str, Any]) -> Any:
        frames = await read_all(engine, request["request_body"])
        read.append(sum(len(f) for f in frames))
        return {"body": "read it all"}

    worker.register_trigger("http", "api::upload", {"api_path": "upload", "http_method": "POST"})
    parts = [b"x" * 100_000] * 4  # 400,000 bytes against a 300,000 limit, no Content-Length
    async with worker.connect(), client(engine) as http:
        await routed(engine, 1)
        response = await http.post("/upload", content=upload_chunks(parts))
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        assert response.headers["access-control-allow-origin"] == "*"
        assert (await http.post("/upload", content=b"small")).json() == "read it all"
    assert all(total <= 300_000 for total in read)


async def test_a_response_streams_from_the_response_channel(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    worker = III(worker_url(engine), worker_name="api")

    @worker.function(id="api::stream")
    async def stream(request: dict[str, Any]) -> None:
        async with open_ws(channel_url(engine, request["response"])) as ws:
            await control(ws, type="set_status", status_code=201)
            await control(ws, type="set_headers", headers={"content-type": "text/plain"})
            await control(ws, type="set_headers", headers={"x-part": "one", "content-length": "1"})
            for part in (b"alpha ", b"beta ", b"gamma"):
                await ws.send_message(part)
            await control(ws, type="set_status", status_code=500)  # too late: ignored
        return None

    worker.register_trigger("http", "api::stream", {"api_path": "stream"})
    async with worker.connect(), client(engine) as http:
        await routed(engine, 1)
        response = await http.get("/stream")
        again = await http.get("/stream")  # the keep-alive connection serves the next one
    for answer in (response, again):
        assert answer.status_code == 201
        assert answer.text == "alpha beta gamma"
        assert answer.headers["content-type"] == "text/plain"
        assert answer.headers["x-part"] == "one"
        assert answer.headers["transfer-encoding"] == "chunked"  # the worker's length is dropped
        assert answer.headers["access-control-allow-origin"] == "*"


async def test_a_response_channel_closed_without_body_answers_its_head(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    worker = III(worker_url(engine), worker_name="api")

    @worker.function(id="api::empty")
    async def empty(request: dict[str, Any]) -> None:
        async with open_ws(channel_url(engine, request["response"])) as ws:
            await control(ws, type="set_status", status_code=204)
            await control(ws, type="set_status", status_code=99)  # out of range: ignored
        return None

    worker.register_trigger("http", "api::empty", {"api_path": "empty"})
    async with worker.connect(), client(engine) as http:
        await routed(engine, 1)
        response = await http.get("/empty")
    assert response.status_code == 204
    assert response.content == b""


async def test_a_result_first_wins_over_a_late_response_channel(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    worker = III(worker_url(engine), worker_name="api")

    @worker.function(id="api::both")
    async def both(request: dict[str, Any]) -> Any:
        return {"status_code": 202, "body": {"from": "result"}}

    worker.register_trigger("http", "api::both", {"api_path": "both"})
    async with worker.connect(), client(engine) as http:
        await routed(engine, 1)
        response = await http.get("/both")
    assert response.status_code == 202
    assert response.json() == {"from": "result"}


async def test_a_result_wins_while_the_open_channel_has_sent_no_body(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    worker = III(worker_url(engine), worker_name="api")
    release = trio.Event()

    async def hold_channel(ref: dict[str, Any], task_status: trio.TaskStatus[None]) -> None:
        async with open_ws(channel_url(engine, ref)) as ws:
            await control(ws, type="set_status", status_code=418)  # control only: no start
            task_status.started()
            await release.wait()

    @worker.function(id="api::both")
    async def both(request: dict[str, Any]) -> Any:
        ref = request["response"]
        await nursery.start(hold_channel, ref)
        channel = engine.channels.channels[ref["channel_id"]]
        await wait_until(  # the engine has seen the writer before the result comes
            lambda: channel.writer_taken, what="the channel's writer is taken", timeout=5
        )
        return {"status_code": 202, "body": {"from": "result"}}

    worker.register_trigger("http", "api::both", {"api_path": "both"})
    async with trio.open_nursery() as nursery, worker.connect(), client(engine) as http:
        await routed(engine, 1)
        response = await http.get("/both")
        release.set()
    assert response.status_code == 202
    assert response.json() == {"from": "result"}


async def test_a_stalled_stream_closes_the_connection(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(modules=(http_entry(default_timeout=400),))
    worker = III(worker_url(engine), worker_name="api")
    stop = trio.Event()

    @worker.function(id="api::stall")
    async def stall(request: dict[str, Any]) -> None:
        async with open_ws(channel_url(engine, request["response"])) as ws:
            await ws.send_message(b"first and only")
            await stop.wait()  # never writes again, never closes
        return None

    worker.register_trigger("http", "api::stall", {"api_path": "stall"})
    async with worker.connect(), client(engine) as http:
        await routed(engine, 1)
        with pytest.raises(httpx.RemoteProtocolError):  # the body ends before its last chunk
            await http.get("/stall")
        stop.set()


@pytest.mark.slow  # an official SDK in its own process
async def test_official_node_sdk_http_helper_streams_both_ways(engine: Engine) -> None:
    async with sdk_worker("N22", worker_url(engine), "n22-http") as node:
        await node.register("n22::shout", "http_stream")
        reply = await node.request(
            {
                "op": "register_trigger",
                "trigger_type": "http",
                "function_id": "n22::shout",
                "config": {"api_path": "shout", "http_method": "POST"},
            }
        )
        assert reply["ok"], reply
        await routed(engine, 1)
        async with httpx.AsyncClient(base_url=base_url(engine), timeout=20) as http:
            response = await http.post(
                "/shout", content=b"hello streamed world", headers={"content-type": "text/plain"}
            )
    assert response.status_code == 201
    assert response.text == "HELLO STREAMED WORLD "
    assert response.headers["x-streamed-by"] == "n22-http"
    assert response.headers["content-type"] == "text/plain"


async def test_shutdown_drains_requests_in_flight(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    worker = III(worker_url(engine), worker_name="api")
    entered, release = trio.Event(), trio.Event()

    @worker.function(id="api::slow")
    async def slow(request: dict[str, Any]) -> Any:
        entered.set()
        await release.wait()
        return {"body": "finished during the drain"}

    worker.register_trigger("http", "api::slow", {"api_path": "slow"})
    async with worker.connect(), client(engine) as http, client(engine) as idle:
        await routed(engine, 1)
        assert (await idle.get("/nowhere")).status_code == 404  # a kept-alive idle connection
        answers: list[httpx.Response] = []
        drained = trio.Event()

        async def drain() -> None:
            await engine.drain(10)
            drained.set()

        async with trio.open_nursery() as nursery:

            async def request() -> None:
                answers.append(await http.get("/slow"))

            nursery.start_soon(request)
            await entered.wait()
            nursery.start_soon(drain)
            await wait_until(
                lambda: engine.modules["rest_api"].introspect()["in_flight"] == 1,
                what="one request is in flight",
                timeout=5,
            )

            async def refused() -> bool:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", base_port(engine))
                except OSError:
                    return True
                await stream.aclose()
                return False

            await wait_until(refused, what="the listener refuses new connections", timeout=5)
            assert not drained.is_set()  # the drain waits for the request in flight
            release.set()
        [answer] = answers
        assert answer.json() == "finished during the drain"
        assert answer.headers["connection"] == "close"
        with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError)):
            await idle.get("/nowhere")  # its idle connection was closed, the port too


def base_port(engine: Engine) -> int:
    port: int = engine.modules["rest_api"].introspect()["port"]
    return port
