"""Helpers for the OtelModule tests: module entries, in-process calls, a collector stand-in."""

from __future__ import annotations

from typing import Any

import h11
import orjson
import trio

from iii_trio.runtime.config.loading import ModuleEntry
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.observability.config import OtelConfig
from tests.support.engine import StartEngine


def otel_entry(**config: Any) -> ModuleEntry:
    settings = OtelConfig(**{"exporter": "memory", "logs_console_output": False, **config})
    kind, declared = "observability", "modules::observability::OtelModule"
    return ModuleEntry(kind, declared, "modules[2]", settings)


async def call(engine: Engine, function_id: str, data: Any = None) -> Any:
    return await engine.router.call(function_id, data or {}, caller_module="test")


def otel_stats(engine: Engine) -> dict[str, Any]:
    stats: dict[str, Any] = engine.modules["observability"].introspect()
    return stats


async def collector_double(
    received: list[tuple[str, Any]], task_status: trio.TaskStatus[int]
) -> None:
    """A stand-in OTLP/HTTP collector (none is installed here): answers 200 to each POST and
    keeps (path, JSON body)."""

    async def serve(stream: trio.SocketStream) -> None:
        http = h11.Connection(h11.SERVER)
        body = b""
        target = ""
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                http.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                target = event.target.decode()
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                received.append((target, orjson.loads(body)))
                data = http.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                await stream.send_all((data or b"") + (http.send(h11.EndOfMessage()) or b""))
                await stream.aclose()
                return

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(serve, listeners)


async def engine_exporting(
    start_engine: StartEngine, nursery: trio.Nursery, path: str, **settings: Any
) -> tuple[Engine, list[tuple[str, Any]]]:
    """An engine exporting spans and logs (OTLP/HTTP) to a collector stand-in at ``path``,
    and the list of (path, body) the stand-in receives."""
    received: list[tuple[str, Any]] = []
    port = await nursery.start(collector_double, received)
    entry = otel_entry(
        exporter="both",
        logs_exporter="both",
        endpoint=f"http://127.0.0.1:{port}{path}",
        logs_flush_interval_ms=50,
        **settings,
    )
    return await start_engine(modules=(entry,)), received
