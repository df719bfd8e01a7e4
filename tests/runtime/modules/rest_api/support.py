"""Helpers for the RestApiModule tests: module entries, handlers, the HTTP client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

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
