"""HTTP framing (issue 16, item 12) on real sockets: a request whose length two headers
disagree on is refused and its connection closed, so bytes after it never run as a request
of their own (smuggling); an answer given before the request was read to its end (431 for
an oversized head, 413 for an oversized body) reaches the client instead of a reset."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import trio
import trio.testing

from iii_trio.runtime.engine import Engine
from iii_trio.sdk import III
from tests.runtime.modules.rest_api.support import (
    http_entry,
    module_of,
    raw_exchange,
    read_until_closed,
    responses,
    routed,
)
from tests.support.engine import StartEngine, worker_url

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
async def engine(start_engine: StartEngine) -> Engine:
    return await start_engine(modules=(http_entry(body_limit=1024),))


@pytest.fixture
async def calls(engine: Engine) -> Any:
    """``POST /echo`` and ``GET /smuggled`` bound; yields the paths whose function ran."""
    worker = III(worker_url(engine), worker_name="api")
    ran: list[str] = []

    async def record(request: dict[str, Any]) -> Any:
        ran.append(request["path"])
        return {"body": request["path"]}

    worker.register_function("api::record", record)
    worker.register_trigger("http", "api::record", {"api_path": "echo", "http_method": "POST"})
    worker.register_trigger("http", "api::record", {"api_path": "smuggled"})
    async with worker.connect():
        await routed(engine, 2)
        yield ran


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/octet-stream"], ids=["json", "streamed"]
)
async def test_http_framing_content_length_with_transfer_encoding_is_refused_and_closed(
    engine: Engine, calls: list[str], content_type: str, autojump_clock: trio.testing.MockClock
) -> None:
    request = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: 40\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n" % content_type.encode()
    )
    [(status, headers, body)] = responses(await raw_exchange(engine, request + SMUGGLED))
    assert status == 400
    assert headers["connection"] == "close"
    assert orjson.loads(body)["error"]["code"] == "bad_request"
    assert calls == []  # neither the request nor the bytes after it reached a function
    # Each header alone frames as usual, on a kept-alive connection.
    alone = [
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\n\r\n{}",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    ]
    last = SMUGGLED.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    answered = responses(await raw_exchange(engine, b"".join(alone) + last))
    assert [status for status, _, _ in answered] == [200, 200, 200]
    assert calls == ["echo", "echo", "smuggled"]


async def send_then_read(engine: Engine, request: bytes) -> bytes:
    """Send all of ``request`` (however long) while reading what comes back at once."""
    async with await trio.open_tcp_stream("127.0.0.1", module_of(engine).port) as stream:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, request)
            received = await read_until_closed(stream)
            nursery.cancel_scope.cancel()
    return received


async def test_http_framing_an_oversized_head_gets_431_not_a_reset(
    engine: Engine, calls: list[str], autojump_clock: trio.testing.MockClock
) -> None:
    """4 MB of header: far more than the socket buffers hold, so the client is still
    sending when the engine answers."""
    request = b"GET /smuggled HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4_000_000 + b"\r\n\r\n"
    [(status, headers, body)] = responses(await send_then_read(engine, request))
    assert status == 431
    assert headers["connection"] == "close"
    assert orjson.loads(body)["error"]["code"] == "bad_request"
    assert calls == []


async def test_http_framing_an_oversized_body_gets_413_not_a_reset(
    engine: Engine, calls: list[str], autojump_clock: trio.testing.MockClock
) -> None:
    """Answered unread (its Content-Length is past ``body_limit``) while 4 MB still come."""
    body = b" " * 4_000_000
    request = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    [(status, headers, answer)] = responses(await send_then_read(engine, request + body))
    assert status == 413
    assert headers["connection"] == "close"
    assert orjson.loads(answer)["error"]["code"] == "payload_too_large"
    assert calls == []
