"""Memory per peer over HTTP (issue 16, item 8): a request body is read only once the request
holds an execution slot, and always against ``body_limit`` (chunked bodies too), so at most
``concurrency_request_limit`` bodies are in the engine's memory at once however many clients
send them. Real sockets, counted by the module's ``body_bytes_held`` / ``body_bytes_peak``."""

from __future__ import annotations

from typing import Any

import orjson
import trio
import trio.testing

from iii_trio.sdk import III
from tests.runtime.modules.rest_api.support import (
    http_entry,
    module_of,
    read_until_closed,
    responses,
    routed,
)
from tests.support.engine import StartEngine, worker_url
from tests.support.waiting import wait_until

LIMIT = 4  # concurrency_request_limit: LIMIT requests execute, LIMIT more may wait
CLIENTS = 2 * LIMIT
EXTRA = 2  # beyond that: 503 at once, their bodies never read
BODY = 64 * 1024  # each client's body: fits the kernel's socket buffers, so sends never block
PIECE = 8 * 1024  # sent a piece at a time ...
PAUSE = 0.1  # ... this far apart (virtual seconds)


def json_string_body(size: int) -> bytes:
    return orjson.dumps("x" * (size - 2))  # exactly `size` bytes


async def slow_post(port: int, body: bytes, answers: list[bytes]) -> None:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        head = (
            b"POST /size HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        await stream.send_all(head)
        for start in range(0, len(body), PIECE):
            await trio.sleep(PAUSE)
            await stream.send_all(body[start : start + PIECE])
        answers.append(await read_until_closed(stream))


async def test_memory_per_peer_bodies_are_read_only_after_admission(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    engine = await start_engine(
        modules=(http_entry(concurrency_request_limit=LIMIT, body_limit=BODY),)
    )
    module = module_of(engine)
    worker = III(worker_url(engine), worker_name="api")

    async def size(request: dict[str, Any]) -> Any:
        return {"body": len(request["body"])}

    worker.register_function("api::size", size)
    worker.register_trigger("http", "api::size", {"api_path": "size", "http_method": "POST"})
    answers: list[bytes] = []
    async with worker.connect():
        await routed(engine, 1)
        async with trio.open_nursery() as nursery:
            for _ in range(CLIENTS + EXTRA):
                nursery.start_soon(slow_post, module.port, json_string_body(BODY), answers)
            # The ones without a slot wait with their heads only, while their clients send.
            await wait_until(
                lambda: module.introspect()["waiting"] == CLIENTS - LIMIT,
                what="all but LIMIT requests wait for a slot",
            )
            assert module.introspect()["body_bytes_held"] <= LIMIT * BODY
    answered = [(status, orjson.loads(body)) for status, _, body in map(only, answers)]
    assert sorted(status for status, _ in answered) == [200] * CLIENTS + [503] * EXTRA
    assert [body for status, body in answered if status == 200] == [BODY - 2] * CLIENTS
    refused = [body["error"]["code"] for status, body in answered if status == 503]
    assert refused == ["overloaded"] * EXTRA
    counters = module.introspect()
    assert counters["body_bytes_peak"] <= LIMIT * BODY  # never more than LIMIT bodies at once
    assert counters["body_bytes_peak"] > (LIMIT - 1) * BODY  # and LIMIT of them did overlap
    assert counters["body_bytes_held"] == 0  # all given back


def only(received: bytes) -> tuple[int, dict[str, str], bytes]:
    [response] = responses(received)
    return response


async def test_memory_per_peer_a_chunked_body_is_refused_413_as_soon_as_it_passes_the_limit(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    """The client is still sending (it never ends its body) when it gets its 413."""
    limit = 10_000
    engine = await start_engine(modules=(http_entry(body_limit=limit),))
    worker = III(worker_url(engine), worker_name="api")
    called: list[Any] = []

    async def record(request: dict[str, Any]) -> Any:
        called.append(request)
        return {"body": "called"}

    worker.register_function("api::json", record)
    worker.register_trigger("http", "api::json", {"api_path": "json", "http_method": "POST"})
    async with worker.connect():
        await routed(engine, 1)
        async with await trio.open_tcp_stream("127.0.0.1", module_of(engine).port) as stream:
            await stream.send_all(
                b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            piece = b"1000\r\n" + b" " * 0x1000 + b"\r\n"  # 4 KiB chunks of whitespace
            for _ in range(3):  # 12 KiB: past the limit, and no last chunk
                await stream.send_all(piece)
            [(status, headers, body)] = responses(await read_until_closed(stream))
    assert status == 413
    assert headers["connection"] == "close"
    assert orjson.loads(body)["error"]["code"] == "payload_too_large"
    assert called == []
    assert module_of(engine).introspect()["body_bytes_peak"] <= limit
