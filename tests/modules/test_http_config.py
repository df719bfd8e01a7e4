"""RestApiModule configuration that must reach the running server: CORS
``allowed_methods`` with invalid names dropped (§3.6)."""

from __future__ import annotations

import pytest

from iii_trio.runtime.config import CorsConfig
from iii_trio.sdk import III
from tests.conftest import StartEngine, worker_url
from tests.modules.test_http import answer, client, http_entry, routed


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
    start_engine: StartEngine, allowed_methods: tuple[str, ...], expected: str | None
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
