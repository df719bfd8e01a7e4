"""The HTTP server the RestApiModule was measured against: hypercorn's trio worker serving a
bare ASGI app, no engine behind it, run by bench/http_routes.py in hypercorn's venv:

    .deps/bench-hypercorn/bin/python bench/roles_hypercorn.py PORT

It serves in this one process (the ``hypercorn`` command would fork a worker process, whose
CPU time the benchmark could not see).

``POST /direct`` answers ``{"ok": true}`` after reading the JSON body, the least any
server must do per request; the engine's row does that plus routing and an invocation.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ANSWER = b'{"ok":true}'


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = [(b"content-type", b"application/json"), (b"content-length", b"11")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


async def lifespan(receive: Receive, send: Send) -> None:
    """Nothing to set up or tear down, but hypercorn waits for the answers."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def main() -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = [f"127.0.0.1:{sys.argv[1]}"]
    config.keep_alive_max_requests = 10**9  # its default closes after 1,000; the engine never
    trio.run(serve, app, config)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
