"""Helpers for the RestApiModule tests: module entries, handlers, the HTTP client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import trio

from iii_trio.runtime.config.loading import ModuleEntry
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.rest_api.config import RestApiConfig
from tests.support.waiting import wait_until


def http_entry(**config: Any) -> ModuleEntry:
    settings = RestApiConfig(**{"port": 0, "host": "127.0.0.1", **config})
    return ModuleEntry("rest_api", "modules::api::RestApiModule", "modules[0]", settings)


def answer(result: Any) -> Any:
    """A handler that always returns ``result``."""

    async def handler(data: Any) -> Any:
        return result

    return handler


def base_url(engine: Engine) -> str:
    module: Any = engine.modules["rest_api"]
    return f"http://127.0.0.1:{module.port}"


async def routed(engine: Engine, count: int) -> None:
    module: Any = engine.modules["rest_api"]
    await wait_until(
        lambda: module.introspect()["routes"] == count, what=f"{count} http route(s) are bound"
    )


@contextlib.asynccontextmanager
async def client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url(engine), timeout=20) as http:
        yield http


def module_of(engine: Engine) -> Any:
    """The running RestApiModule (its port, its ``introspect()`` counters)."""
    return engine.modules["rest_api"]


async def read_until_closed(stream: trio.SocketStream, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes (a reset ends it too)."""
    received = b""
    with trio.fail_after(timeout):
        try:
            while chunk := await stream.receive_some(65536):
                received += chunk
        except trio.BrokenResourceError:
            pass
    return received


async def raw_exchange(engine: Engine, request: bytes) -> bytes:
    """Send ``request`` on a fresh socket; everything answered until the server closes."""
    async with await trio.open_tcp_stream("127.0.0.1", module_of(engine).port) as stream:
        await stream.send_all(request)
        return await read_until_closed(stream)


def responses(received: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The HTTP/1.1 responses in ``received``, in order: (status, headers, body), each body
    by its Content-Length (the engine frames full answers so)."""
    parsed = []
    rest = received
    while rest:
        head, _, rest = rest.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", len(rest)))
        parsed.append((int(status_line.split()[1]), headers, rest[:length]))
        rest = rest[length:]
    return parsed
