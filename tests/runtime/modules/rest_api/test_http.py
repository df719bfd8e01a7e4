"""RestApiModule with real trio-SDK workers and a real HTTP client (spec/modules.md §3)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import attrs
import httpx
import orjson
import pytest
import trio
import trio.testing

from iii_trio.runtime.engine import Engine, load_config
from iii_trio.runtime.modules.rest_api.config import CorsConfig, RestApiConfig
from iii_trio.sdk import III
from tests.runtime.modules.rest_api.support import answer, client, http_entry, routed
from tests.support.engine import StartEngine, worker_url
from tests.support.raw_worker import raw_worker
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[4]


@pytest.fixture
async def engine(start_engine: StartEngine) -> Engine:
    return await start_engine(modules=(http_entry(default_timeout=3000),))


async def test_request_to_input_mapping(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    worker = III(worker_url(engine), worker_name="api")

    @worker.function(id="api::echo")
    async def echo(request: dict[str, Any]) -> dict[str, Any]:
        return {"status_code": 201, "body": request, "headers": {"X-Served-By": "api"}}

    worker.register_trigger("http", "api::echo", {"api_path": "users/:id", "http_method": "post"})
    async with worker.connect(), client(engine) as http:
        await routed(engine, 1)
        response = await http.post(
            "/users/hello%20world?q=x&q=y&plus=a+b&empty=",
            json={"name": "Ada"},
            headers={"X-Request-Id": "abc"},
        )
    assert response.status_code == 201
    assert response.headers["x-served-by"] == "api"
    assert response.headers["access-control-allow-origin"] == "*"
    request = response.json()
    assert request["path_params"] == {"id": "hello world"}
    assert request["query_params"] == {"q": "y", "plus": "a b", "empty": ""}
    assert request["headers"]["x-request-id"] == "abc"
    assert request["headers"]["content-type"] == "application/json"
    assert request["path"] == "users/:id"
    assert request["method"] == "POST"
    assert request["body"] == {"name": "Ada"}
    assert request["trigger"] == {"type": "http", "path": "users/:id", "method": "POST"}


async def test_slashes_static_precedence_and_raw_bodies(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    worker = III(worker_url(engine), worker_name="api")
    for suffix, result in (
        ("plain", {"body": "plain"}),
        ("slash", {"body": "slash"}),
        ("static", {"body": "static"}),
        ("param", {"body": "param"}),
        ("text", {"body": "hi there", "headers": ["Content-Type: text/plain"]}),
    ):
        worker.register_function(f"api::{suffix}", answer(result))
    worker.register_trigger("http", "api::plain", {"api_path": "/items"})
    worker.register_trigger("http", "api::slash", {"api_path": "items/"})
    worker.register_trigger("http", "api::static", {"api_path": "items/special"})
    worker.register_trigger("http", "api::param", {"api_path": "items/:id"})
    worker.register_trigger("http", "api::text", {"api_path": "text"})
    async with worker.connect(), client(engine) as http:
        await routed(engine, 5)
        assert (await http.get("/items")).json() == "plain"
        assert (await http.get("/items/")).json() == "slash"  # a trailing slash is not
        assert (await http.get("/items/special")).json() == "static"
        assert (await http.get("/items/other")).json() == "param"
        text = await http.get("/text")
        assert text.text == "hi there"
        assert text.headers["content-type"] == "text/plain"


def who(name: str) -> Any:
    async def handler(request: dict[str, Any]) -> Any:
        return {"body": {"who": name, "path": request["path"]}}

    return handler


async def test_a_leading_slash_is_optional_items_and_slash_items_are_one_route(
    engine: Engine,
    autojump_clock: trio.testing.MockClock,
) -> None:
    bare = III(worker_url(engine), worker_name="bare")
    slashed = III(worker_url(engine), worker_name="slashed")
    bare.register_function("bare::items", who("bare"))
    bare.register_trigger("http", "bare::items", {"api_path": "items"})
    slashed.register_function("slashed::items", who("slashed"))
    slashed.register_trigger("http", "slashed::items", {"api_path": "/items"})
    bare_answer = {"who": "bare", "path": "items"}  # `path`: the pattern as registered
    slashed_answer = {"who": "slashed", "path": "/items"}
    async with client(engine) as http:
        async with bare.connect():
            await routed(engine, 1)
            assert (await http.get("/items")).json() == bare_answer  # `items` serves /items
            async with slashed.connect():
                await routed(engine, 2)
                # One route: the newer binding took it over (two routes could not both match).
                assert (await http.get("/items")).json() == slashed_answer
            await routed(engine, 1)
            assert (await http.get("/items")).json() == bare_answer  # and handed it back
        await routed(engine, 0)
        async with slashed.connect():
            await routed(engine, 1)
            assert (await http.get("/items")).json() == slashed_answer  # `/items` alone too


async def test_errors_share_one_envelope_with_cors(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    cors = CorsConfig(allowed_origins=("https://app.example",), allowed_methods=("GET", "POST"))
    engine = await start_engine(
        modules=(http_entry(default_timeout=500, body_limit=100, cors=cors),)
    )
    worker = III(worker_url(engine), worker_name="api")
    calls: list[str] = []

    @worker.function(id="api::fine")
    async def fine(request: Any) -> Any:
        calls.append("fine")
        return {"body": {"ok": True}}

    @worker.function(id="api::boom")
    async def boom(request: Any) -> Any:
        raise ValueError("kaboom")

    @worker.function(id="api::slow")
    async def slow(request: Any) -> Any:
        await trio.sleep(5)

    @worker.function(id="api::never")
    async def never(request: Any) -> bool:
        return False

    worker.register_trigger("http", "api::fine", {"api_path": "fine", "http_method": "POST"})
    worker.register_trigger("http", "api::boom", {"api_path": "boom"})
    worker.register_trigger("http", "api::slow", {"api_path": "slow"})
    worker.register_trigger("http", "nope::missing", {"api_path": "missing"})
    worker.register_trigger(
        "http", "api::fine", {"api_path": "guarded", "condition_function_id": "api::never"}
    )
    origin = {"Origin": "https://app.example"}
    async with worker.connect(), client(engine) as http:
        await routed(engine, 5)

        async def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
            assert response.status_code == status, response.text
            assert response.headers["access-control-allow-origin"] == "https://app.example"
            body: dict[str, Any] = response.json()["error"]
            assert body["code"] == code
            assert len(body["error_id"]) == 16
            return body

        await error(await http.get("/nowhere", headers=origin), 404, "not_found")
        wrong = await http.get("/fine", headers=origin)
        await error(wrong, 405, "method_not_allowed")
        assert wrong.headers["allow"] == "POST"
        bad_json = await http.post(
            "/fine", content=b"{nope", headers={**origin, "content-type": "application/json"}
        )
        await error(bad_json, 400, "invalid_json")
        await error(
            await http.post("/fine", content=b"x" * 101, headers=origin), 413, "payload_too_large"
        )
        failed = await error(await http.get("/boom", headers=origin), 500, "invocation_failed")
        assert "kaboom" in failed["message"]
        await error(await http.get("/missing", headers=origin), 500, "function_not_found")
        await error(await http.get("/guarded", headers=origin), 422, "condition_not_met")
        await error(await http.get("/slow", headers=origin), 504, "timeout")

        preflight = await http.options(
            "/fine", headers={**origin, "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-methods"] == "GET, POST"
        assert (await http.post("/fine", headers={"Origin": "https://evil.example"})).json() == {
            "ok": True
        }
    assert calls == ["fine"]  # neither the preflight nor the errors called it


async def test_routes_follow_their_bindings(engine: Engine) -> None:
    first = III(worker_url(engine), worker_name="first")
    second = III(worker_url(engine), worker_name="second")
    # Sync handlers run in a worker thread, which the autojump clock cannot see: real clock.
    first.register_function("first::hello", lambda data: {"body": "first"})
    second.register_function("second::hello", lambda data: {"body": "second"})
    first.register_trigger("http", "first::hello", {"api_path": "hello"})
    second.register_trigger("http", "second::hello", {"api_path": "hello"})
    async with client(engine) as http:
        async with first.connect():
            await routed(engine, 1)
            assert (await http.get("/hello")).json() == "first"
            async with second.connect():
                await routed(engine, 2)
                assert (await http.get("/hello")).json() == "second"  # the newest serves
            await routed(engine, 1)
            assert (await http.get("/hello")).json() == "first"  # back to the previous one
        await routed(engine, 0)
        assert (await http.get("/hello")).status_code == 404


async def test_a_failing_condition_answers_500_with_its_error_code(engine: Engine) -> None:
    worker = III(worker_url(engine), worker_name="api")
    calls: list[Any] = []
    # A sync handler runs in a worker thread, which the autojump clock cannot see: real clock.
    worker.register_function("api::guarded", lambda request: calls.append(request))
    worker.register_trigger(
        "http", "api::guarded", {"api_path": "guarded", "condition_function_id": "auth::check"}
    )
    async with raw_worker(worker_url(engine)) as auth, worker.connect(), client(engine) as http:
        await auth.register("auth::check")
        await routed(engine, 1)
        await wait_until(
            lambda: "auth::check" in engine.registry.functions, what="auth::check is registered"
        )
        async with trio.open_nursery() as nursery:
            answered: list[httpx.Response] = []

            async def get() -> None:
                answered.append(await http.get("/guarded", headers={"Origin": "https://x.example"}))

            nursery.start_soon(get)
            check = await auth.expect("invokefunction")
            assert check["function_id"] == "auth::check"
            assert check["data"]["path"] == "guarded"  # the payload the handler would get
            error = {"code": "auth_unavailable", "message": "the auth backend is down"}
            await auth.answer(check, error=error)
    [response] = answered
    assert response.status_code == 500
    assert response.headers["access-control-allow-origin"] == "*"
    body = response.json()["error"]
    assert (body["code"], body["message"]) == ("auth_unavailable", "the auth backend is down")
    assert calls == []  # the handler did not run


async def test_an_http_binding_without_api_path_is_refused(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    async with raw_worker(worker_url(engine)) as owner:
        binding = {
            "type": "registertrigger",
            "id": "b-1",
            "trigger_type": "http",
            "function_id": "api::anything",
            "config": {"http_method": "GET"},
        }
        await owner.send(binding)
        refused = await owner.expect("triggerregistrationresult")
        assert refused["id"] == "b-1"
        assert refused["error"] == {
            "code": "trigger_registration_failed",
            "message": "api_path is required for http triggers",
        }
        listed = await owner.call("engine::triggers::list", {})
        assert listed["result"]["triggers"] == []  # not stored
    module: Any = engine.modules["rest_api"]
    assert module.trigger.routes.count == 0


async def test_accepted_sockets_use_tcp_nodelay(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    module: Any = engine.modules["rest_api"]
    async with await trio.open_tcp_stream("127.0.0.1", module.port) as stream:
        await stream.send_all(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(10):
            assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 404 ")
        # Kept alive: the server's side of this connection is still open; ask its socket.
        # (trio's SocketStream enables TCP_NODELAY by default too; the module sets it anyway.)
        [conn] = module._connections
        server_side = conn.stream.socket
        assert server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def counting(served: dict[str, int], name: str) -> Any:
    async def hello(data: Any) -> Any:
        served[name] += 1
        await trio.sleep(0.05)
        return {"body": name}

    return hello


async def test_two_replicas_serve_one_route(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    served: dict[str, int] = {"r1": 0, "r2": 0}
    replicas = []
    for name in served:
        replica = III(worker_url(engine), worker_name=name)

        replica.register_function("api::hello", counting(served, name))
        replica.register_trigger("http", "api::hello", {"api_path": "hello"})
        replicas.append(replica)
    async with replicas[0].connect(), replicas[1].connect(), client(engine) as http:
        await routed(engine, 2)
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(http.get, "/hello")
    assert served["r1"] + served["r2"] == 10
    assert served["r1"] > 0
    assert served["r2"] > 0


async def test_a_slow_client_is_closed_at_the_header_deadline(
    engine: Engine, autojump_clock: trio.testing.MockClock
) -> None:
    module: Any = engine.modules["rest_api"]
    worker = III(worker_url(engine), worker_name="api")
    worker.register_function("api::fine", answer({"body": "fine"}))
    worker.register_trigger("http", "api::fine", {"api_path": "fine"})
    from iii_trio.runtime.modules.rest_api import module as rest_api

    deadline = rest_api.HEADER_DEADLINE_SECONDS
    rest_api.HEADER_DEADLINE_SECONDS = 0.5  # the test's own deadline, instead of 10 s
    try:
        async with worker.connect(), client(engine) as http:
            await routed(engine, 1)
            slow = await trio.open_tcp_stream("127.0.0.1", module.port)
            request = b"GET /fine HTTP/1.1\r\nHost: x\r\n"
            for byte in request[:10]:  # byte by byte, never finishing the head
                await slow.send_all(bytes([byte]))
                assert (await http.get("/fine")).json() == "fine"  # others are served
            with trio.fail_after(5):
                closed = await slow.receive_some(100)
            assert closed == b""  # the server hung up
            await slow.aclose()
    finally:
        rest_api.HEADER_DEADLINE_SECONDS = deadline


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /x HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET /x HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n", 400),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", 400),  # TLS hello
        (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: many\r\n\r\n", 400),
    ],
    ids=["no-host", "bad-header", "tls", "bad-length"],
)
async def test_a_malformed_request_gets_its_status_in_the_error_envelope(
    engine: Engine, request_bytes: bytes, status: int, autojump_clock: trio.testing.MockClock
) -> None:
    module: Any = engine.modules["rest_api"]
    async with await trio.open_tcp_stream("127.0.0.1", module.port) as stream:
        await stream.send_all(request_bytes)
        answer = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), answer
    assert b"connection: close" in head.lower()
    assert orjson.loads(body)["error"]["code"] == "bad_request"


async def test_the_shipped_config_yaml_block_serves(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    [entry] = [e for e in load_config(REPO / "config.yaml").modules if e.kind == "rest_api"]
    assert isinstance(entry.config, RestApiConfig)
    assert entry.config.concurrency_request_limit == 2048
    # As shipped, but on a free port (3111 may be taken on a test machine).
    served = attrs.evolve(entry, config=attrs.evolve(entry.config, port=0, host="127.0.0.1"))
    engine = await start_engine(modules=(served,))
    worker = III(worker_url(engine), worker_name="api")
    worker.register_function("api::ping", answer({"body": "pong"}))
    worker.register_trigger("http", "api::ping", {"api_path": "ping"})
    async with worker.connect(), client(engine) as http:
        await routed(engine, 1)
        response = await http.get("/ping", headers={"Origin": "https://anywhere.example"})
    assert response.json() == "pong"
    assert response.headers["access-control-allow-origin"] == "*"  # allowed_origins: ['*']
