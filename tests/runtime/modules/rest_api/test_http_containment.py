"""Containment (issue 16, item 1): a failure while serving one HTTP request or connection
ends only that request or connection. The module is never restarted for it, requests in
flight on other connections finish, and new ones are served.

The failures are injected (a bug in a step of one request, picked by an ``x-fault``
header); the engine, the workers and the sockets are real.
"""

from __future__ import annotations

from typing import Any

import h11
import orjson
import pytest
import trio
import trio.testing

from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.rest_api import exchange as exchange_module
from iii_trio.runtime.modules.rest_api import module as module_module
from iii_trio.runtime.modules.rest_api.http_io import HttpConnection
from iii_trio.sdk import III
from tests.runtime.modules.rest_api.support import (
    answer,
    client,
    http_entry,
    raw_exchange,
    responses,
    routed,
)
from tests.support.engine import StartEngine, worker_url

FAULTY = b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Fault: 1\r\nContent-Length: 2\r\n\r\n{}"


class InjectedBug(Exception):
    pass


def faulty(headers: Any) -> bool:
    return any(name.lower() in (b"x-fault", "x-fault") for name, *_ in headers)


def fail_while_routing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in one exchange, before its function is called (building its input)."""
    real = exchange_module.request_input

    def request_input(method: str, query: str, headers: dict[str, str], *rest: Any) -> Any:
        if "x-fault" in headers:
            raise InjectedBug("a bug while building the function input")
        return real(method, query, headers, *rest)

    monkeypatch.setattr(exchange_module, "request_input", request_input)


def fail_after_the_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the connection loop itself, once a request head is in."""

    class Connection(HttpConnection):
        async def read_head(self, deadline_seconds: float) -> h11.Request | None:
            head = await super().read_head(deadline_seconds)
            if head is not None and faulty(head.headers):
                raise InjectedBug("a bug in the connection loop")
            return head

    monkeypatch.setattr(module_module, "HttpConnection", Connection)


def fail_midway_through_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug after the response head went out: no error answer is possible any more."""

    class Connection(HttpConnection):
        faulty = False

        async def send_full(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            if self.faulty:
                head = h11.Response(status_code=200, headers=[])
                await self.stream.send_all(self.h11.send(head) or b"")
                raise InjectedBug("a bug while writing the answer")
            await super().send_full(status, headers, body)

        async def read_head(self, deadline_seconds: float) -> h11.Request | None:
            head = await super().read_head(deadline_seconds)
            self.faulty = head is not None and faulty(head.headers)
            return head

    monkeypatch.setattr(module_module, "HttpConnection", Connection)


async def module_rows(worker: III) -> tuple[dict[str, Any], dict[str, Any]]:
    """The RestApiModule's ``engine::modules::list`` counters and ``engine::actors::list`` row."""
    modules = (await worker.trigger("engine::modules::list", {}))["modules"]
    [status] = [row["status"] for row in modules if row["name"] == "rest_api"]
    actors = (await worker.trigger("engine::actors::list", {}))["actors"]
    [actor] = [row for row in actors if row["name"] == "rest_api"]
    return status, actor


@pytest.mark.parametrize(
    ("inject", "answered"),
    [
        (fail_while_routing, True),
        (fail_after_the_head, True),
        (fail_midway_through_the_answer, False),
    ],
    ids=["in-the-exchange", "in-the-connection", "after-the-head-went-out"],
)
async def test_containment_a_failure_serving_one_request_ends_only_that_request(
    start_engine: StartEngine,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    inject: Any,
    answered: bool,
) -> None:
    inject(monkeypatch)
    engine: Engine = await start_engine(modules=(http_entry(),))
    worker = III(worker_url(engine), worker_name="api")
    entered, release = trio.Event(), trio.Event()

    async def hold(request: dict[str, Any]) -> Any:
        entered.set()
        await release.wait()
        return {"body": "held"}

    worker.register_function("api::hold", hold)
    worker.register_trigger("http", "api::hold", {"api_path": "hold"})
    worker.register_function("api::echo", answer({"body": "echo"}))
    worker.register_trigger("http", "api::echo", {"api_path": "echo", "http_method": "POST"})
    async with worker.connect(), client(engine) as http, client(engine) as other:
        await routed(engine, 2)
        held: list[Any] = []
        async with trio.open_nursery() as nursery:

            async def in_flight() -> None:  # on its own connection, across the failure
                held.append(await other.get("/hold"))

            nursery.start_soon(in_flight)
            await entered.wait()
            assert (await http.post("/echo", json={})).json() == "echo"  # keep-alive, before

            received = await raw_exchange(engine, FAULTY)
            if answered:
                [(status, headers, body)] = responses(received)
                assert status == 500
                assert headers["connection"] == "close"
                assert orjson.loads(body)["error"]["code"] == "internal_error"
            else:
                assert received.startswith(b"HTTP/1.1 200 ")  # the head, then the close
                assert b"\r\n\r\n" in received

            assert (await http.post("/echo", json={})).json() == "echo"  # same connection
            release.set()
        assert held[0].status_code == 200
        assert held[0].json() == "held"
        status, actor = await module_rows(worker)
    assert status["failures_contained"] == 1  # counted by this incarnation: never restarted
    assert actor["restarts"] == 0
