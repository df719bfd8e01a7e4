"""Slowloris: many clients trickling bytes on the worker port (never finishing the
WebSocket upgrade) and on the HTTP port (never finishing the request head, or the body).
The engine closes each at its deadline while everyone else is served as usual.

The deadlines are shortened for the test (module constants and the RestApi
``default_timeout``); the engine is in-process, the sockets are real.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from iii_trio.runtime.config.loading import ModuleEntry
from iii_trio.runtime.connections import listener as listener_module
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.modules.rest_api import module as rest_api
from iii_trio.runtime.modules.rest_api.config import RestApiConfig
from iii_trio.sdk import III
from tests.reliability.support import record
from tests.runtime.modules.rest_api.support import routed
from tests.support.engine import StartEngine, worker_url
from tests.support.raw_worker import raw_worker

SLOW_CLIENTS = 100
DEADLINE = 1.0  # seconds, instead of the engine's 10 s
TRICKLE = 0.1  # one byte this often
CLOSE_MARGIN = 3.0  # closed by DEADLINE + this, on a loaded 2-core machine


async def trickle_until_closed(
    port: int, data: bytes, closed_after: list[float], at_once: bytes = b""
) -> None:
    """Send ``at_once``, then ``data`` a byte every TRICKLE s (then keep trickling spaces);
    record how long the engine let the socket live."""
    started = trio.current_time()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        await stream.send_all(at_once)
        with trio.fail_after(DEADLINE + CLOSE_MARGIN):
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    try:
                        while await stream.receive_some(65536):
                            pass  # an answer (an HTTP error) before the close is fine
                    except trio.BrokenResourceError:
                        pass
                    closed_after.append(trio.current_time() - started)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                for n in range(10_000):
                    byte = data[n : n + 1] or b" "
                    try:
                        await stream.send_all(byte)
                    except trio.BrokenResourceError:
                        await trio.sleep_forever()  # watch() records the close
                    await trio.sleep(TRICKLE)  # real time: the deadlines measured are wall time
    finally:
        await stream.aclose()


async def test_slow_upgrades_on_the_worker_port_are_cut_at_the_handshake_deadline(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listener_module, "HANDSHAKE_TIMEOUT_SECONDS", DEADLINE)
    assert engine.port is not None
    closed_after: list[float] = []
    good_calls = 0
    async with raw_worker(worker_url(engine)) as target, raw_worker(worker_url(engine)) as caller:
        await target.register("t::echo")
        await target.send({"type": "ping"})
        await target.expect("pong")
        async with trio.open_nursery() as nursery:
            upgrade = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            for _ in range(SLOW_CLIENTS):
                nursery.start_soon(trickle_until_closed, engine.port, upgrade, closed_after)
            with trio.fail_after(DEADLINE + CLOSE_MARGIN + 5):
                while len(closed_after) < SLOW_CLIENTS:
                    # Calls go through, and a new worker gets in, while the attack runs.
                    await caller.invoke("t::echo", good_calls, f"good-{good_calls}")
                    invoke = await target.expect("invokefunction")
                    await target.answer(invoke, {"n": invoke["data"]})
                    assert (await caller.expect("invocationresult"))["result"] == {"n": good_calls}
                    good_calls += 1
                    if good_calls % 20 == 0:
                        async with raw_worker(worker_url(engine)) as newcomer:
                            assert newcomer.worker_id in engine.connections
                    await trio.sleep(0.02)  # real time: calls paced while the clients trickle
        # None of them ever became a worker connection.
        assert set(engine.connections) == {target.worker_id, caller.worker_id}
    assert len(closed_after) == SLOW_CLIENTS
    assert min(closed_after) >= DEADLINE * 0.9  # the deadline, not an early hang-up
    assert max(closed_after) < DEADLINE + CLOSE_MARGIN
    assert good_calls > 10
    record(
        "slowloris_worker_port",
        slow_clients=SLOW_CLIENTS,
        deadline_s=DEADLINE,
        closed_after_max_s=round(max(closed_after), 2),
        good_calls=good_calls,
    )


def http_entry() -> ModuleEntry:
    settings = RestApiConfig(port=0, host="127.0.0.1", default_timeout=int(DEADLINE * 1000))
    return ModuleEntry("rest_api", "modules::api::RestApiModule", "modules[0]", settings)


@pytest.mark.parametrize("part", ["head", "body"])
async def test_slow_requests_on_the_http_port_are_cut_at_their_deadline(
    start_engine: StartEngine, monkeypatch: pytest.MonkeyPatch, part: str
) -> None:
    monkeypatch.setattr(rest_api, "HEADER_DEADLINE_SECONDS", DEADLINE)
    engine = await start_engine(modules=(http_entry(),))
    module: Any = engine.modules["rest_api"]
    worker = III(worker_url(engine), worker_name="api")
    worker.register_function("api::fine", lambda data: {"body": "fine"})
    worker.register_trigger("http", "api::fine", {"api_path": "fine", "http_method": "POST"})
    if part == "head":
        at_once, slow = b"", b"POST /fine HTTP/1.1\r\nHost: x\r\nX-Slow: "
    else:  # a complete head at once, promising a body that trickles in
        at_once = b"POST /fine HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
        at_once += b"Content-Type: application/json\r\n\r\n"  # read whole before the call
        slow = b"{"
    closed_after: list[float] = []
    good_requests = 0
    async with (
        worker.connect(),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{module.port}", timeout=10) as http,
    ):
        await routed(engine, 1)
        async with trio.open_nursery() as nursery:
            for _ in range(SLOW_CLIENTS):
                nursery.start_soon(trickle_until_closed, module.port, slow, closed_after, at_once)
            with trio.fail_after(DEADLINE + CLOSE_MARGIN + 5):
                while len(closed_after) < SLOW_CLIENTS:
                    assert (await http.post("/fine", json={})).json() == "fine"
                    good_requests += 1
                    await trio.sleep(0.02)  # real time: calls paced while the clients trickle
    assert len(closed_after) == SLOW_CLIENTS
    assert min(closed_after) >= DEADLINE * 0.9
    assert max(closed_after) < DEADLINE + CLOSE_MARGIN
    assert good_requests > 10
    record(
        f"slowloris_http_{part}",
        slow_clients=SLOW_CLIENTS,
        deadline_s=DEADLINE,
        closed_after_max_s=round(max(closed_after), 2),
        good_requests=good_requests,
    )


async def test_a_trickled_body_gets_408_in_the_error_envelope(start_engine: StartEngine) -> None:
    engine = await start_engine(modules=(http_entry(),))
    module: Any = engine.modules["rest_api"]
    worker = III(worker_url(engine), worker_name="api")
    worker.register_function("api::fine", lambda data: {"body": "fine"})
    worker.register_trigger("http", "api::fine", {"api_path": "fine", "http_method": "POST"})
    head = b"POST /fine HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    async with worker.connect(), await trio.open_tcp_stream("127.0.0.1", module.port) as stream:
        await routed(engine, 1)
        await stream.send_all(head + b"Content-Length: 10\r\n\r\n{")
        answer = b""
        with trio.fail_after(DEADLINE + CLOSE_MARGIN):
            while chunk := await stream.receive_some(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'"code":"request_timeout"' in answer
