"""RestApiModule configuration that must reach the running server: the newer
``workers: [{name: iii-http}]`` schema through the CLI's loader (§1.1), and CORS
``allowed_methods`` with invalid names dropped (§3.6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from iii_trio.runtime.engine import Engine, load_config
from iii_trio.runtime.modules.rest_api.config import CorsConfig, RestApiConfig
from iii_trio.sdk import III
from tests.runtime.modules.rest_api.support import answer, client, http_entry, routed
from tests.support.engine import StartEngine, worker_url

NEWER_SCHEMA = """\
port: 49134
default_timeout: 5000
workers:
  - name: iii-http
    config:
      port: 0
      host: 127.0.0.1
      default_timeout: 2000
      concurrency_request_limit: 7
      cors:
        allowed_origins: ['https://app.example']
"""


async def test_an_engine_configured_in_the_newer_schema_serves(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(NEWER_SCHEMA)
    loaded = load_config(path)  # the loader `iii-trio serve --config` uses
    [entry] = loaded.modules
    assert entry.kind == "rest_api"
    assert isinstance(entry.config, RestApiConfig)
    # As loaded, but the worker port on a free one (49134 may be taken on a test machine).
    config = attrs.evolve(loaded, port=0, host="127.0.0.1")
    engine: Engine = await nursery.start(Engine(config).run)
    module: Any = engine.modules["rest_api"]
    assert module.config == entry.config  # the file's block, timeout and limit included
    assert module.port not in (None, 0, 3111)  # its own port 0: an ephemeral one
    worker = III(worker_url(engine), worker_name="api")
    worker.register_function("api::ping", answer({"body": "pong"}))
    worker.register_trigger("http", "api::ping", {"api_path": "ping"})
    async with worker.connect(), client(engine) as http:
        await routed(engine, 1)
        response = await http.get("/ping", headers={"Origin": "https://app.example"})
    assert response.status_code == 200
    assert response.json() == "pong"
    # The file's cors block is the one serving: an exact-match origin list, echoed.
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert response.headers["vary"] == "Origin"


@pytest.mark.parametrize(
    ("allowed_methods", "expected"),
    [
        (("get", "POST", "NOT A METHOD", "", "PU{T", "DELETE "), "GET, POST"),
        (("PATCH", "PURGE"), "PATCH, PURGE"),  # an extension method is a valid name
        (("G E T", "{}"), None),  # only invalid names: none allowed, not all
        ((), "*"),
        (("*",), "*"),
    ],
    ids=["invalid-dropped", "extension", "all-invalid", "empty", "star"],
)
async def test_cors_allowed_methods_drop_invalid_names(
    start_engine: StartEngine,
    allowed_methods: tuple[str, ...],
    expected: str | None,
    autojump_clock: trio.testing.MockClock,
) -> None:
    cors = CorsConfig(allowed_methods=allowed_methods)
    engine = await start_engine(modules=(http_entry(cors=cors),))
    worker = III(worker_url(engine), worker_name="api")
    worker.register_function("api::fine", answer({"body": "fine"}))
    worker.register_trigger("http", "api::fine", {"api_path": "fine", "http_method": "POST"})
    async with worker.connect(), client(engine) as http:
        await routed(engine, 1)
        preflight = await http.options(
            "/fine",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        )
    assert preflight.status_code == 200
    assert preflight.headers.get("access-control-allow-methods") == expected
