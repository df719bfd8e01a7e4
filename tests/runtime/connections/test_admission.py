"""Caps one peer cannot spend for all (issue 16 item 10): connection caps per port and per
address, and the descriptor reserve, on real sockets of a real engine.

Non-loopback peers come from one of this machine's own non-loopback addresses (see
tests/support/network.py and test_exposure.py); without one those tests are skipped.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx
import pytest
import trio
import trio.testing

from iii_trio.runtime.connections.admission import DescriptorReserve, PortGate
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.wire.handshake import HandshakeRejected
from tests.runtime.modules.rest_api.support import http_entry
from tests.runtime.modules.stream.support import stream_client, stream_entry, stream_port
from tests.support.engine import StartEngine, worker_url
from tests.support.network import http_upgrade, open_websocket, require_non_loopback
from tests.support.raw_worker import raw_worker
from tests.support.waiting import wait_until


async def test_worker_port_connection_cap_refuses_with_503_and_recovers(
    start_engine: StartEngine,
) -> None:
    engine = await start_engine(max_connections=3)
    port = _port(engine)
    async with AsyncExitStack() as held:
        for _ in range(3):
            await held.enter_async_context(raw_worker(worker_url(engine)))
        status, body = await http_upgrade("127.0.0.1", port, "/")
        assert status == 503
        assert "too many connections on the worker port (max_connections 3)" in body
        assert (await http_upgrade("127.0.0.1", port, "/otel"))[0] == 503
        assert engine.worker_gate.active == 3  # refused sockets never held a slot
    await wait_until(lambda: engine.worker_gate.active == 0, what="the workers are gone")
    async with raw_worker(worker_url(engine)) as worker:  # room again
        assert (await worker.call("engine::functions::list", {}))["result"] == {"functions": []}


async def test_idle_stream_clients_cannot_lock_out_workers(start_engine: StartEngine) -> None:
    """The attack: idle stream clients held every descriptor, so new workers (and HTTP)
    were refused. The stream port's own cap stops them; the worker port stays open."""
    engine = await start_engine(modules=(stream_entry(max_connections=4),))
    async with AsyncExitStack() as held:
        for _ in range(4):
            await held.enter_async_context(stream_client(stream_port(engine)))
        status, body = await http_upgrade("127.0.0.1", stream_port(engine), "/")
        assert status == 503
        assert "too many connections on the stream port (max_connections 4)" in body
        async with raw_worker(worker_url(engine)) as worker:
            assert "result" in await worker.call("engine::functions::list", {})
        stats = engine.modules["stream"].introspect()
        assert (stats["clients"], stats["clients_refused"]) == (4, 1)


async def test_http_port_connection_cap_refuses_with_503(start_engine: StartEngine) -> None:
    engine = await start_engine(modules=(http_entry(max_connections=2),))
    port: int = engine.modules["rest_api"].port
    held = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
    try:
        await wait_until(
            lambda: engine.modules["rest_api"].introspect()["connections"] == 2,
            what="two HTTP connections are open",
        )
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(f"http://127.0.0.1:{port}/anything")
        assert response.status_code == 503
        assert "too many connections on the http port (max_connections 2)" in response.text
        assert response.headers["retry-after"] == "1"
    finally:
        for stream in held:
            await stream.aclose()
    await wait_until(
        lambda: engine.modules["rest_api"].introspect()["connections"] == 0, what="they left"
    )
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(f"http://127.0.0.1:{port}/anything")).status_code == 404


async def test_one_address_cannot_take_a_whole_port(start_engine: StartEngine) -> None:
    source = require_non_loopback()
    engine = await start_engine(
        host="0.0.0.0",
        protected_mode=False,
        max_connections_per_address=2,
        modules=(stream_entry(host="0.0.0.0", max_connections_per_address=1),),
    )
    port = _port(engine)
    sockets = [await open_websocket(source, port, "/otel", source=source) for _ in range(2)]
    try:
        with pytest.raises(HandshakeRejected) as refused:
            await open_websocket(source, port, "/otel", source=source)
        assert refused.value.status == 503
        _, body = await http_upgrade(source, port, "/otel", source=source)
        assert f"too many connections from {source}" in body
        assert "max_connections_per_address 2" in body
        # Loopback peers share only the port's cap: the local deployment is not limited.
        async with AsyncExitStack() as held:
            for _ in range(3):
                await held.enter_async_context(raw_worker(worker_url(engine)))
        stream = await open_websocket(source, stream_port(engine), source=source)
        try:
            answer = await http_upgrade(source, stream_port(engine), source=source)
            assert answer[0] == 503
        finally:
            await stream.aclose()
    finally:
        for ws in sockets:
            await ws.aclose()
    await wait_until(
        lambda: engine.worker_gate.connections_from(source) == 0, what="the sockets are gone"
    )


async def test_a_flood_of_refusals_is_answered_within_a_budget(
    start_engine: StartEngine, autojump_clock: trio.testing.MockClock
) -> None:
    """Refused peers that never send their request cannot pile up: a few are answered
    properly (within 2 s each), the rest are closed at once; none holds a slot."""
    engine = await start_engine(max_connections=1)
    async with raw_worker(worker_url(engine)):
        silent = [await trio.open_tcp_stream("127.0.0.1", _port(engine)) for _ in range(80)]
        try:
            await wait_until(lambda: engine.worker_gate.refused == 80, what="80 refusals")
            assert engine.worker_gate.active == 1
            await trio.sleep(3)  # past the answering deadline: every refused socket is closed
            for stream in silent:
                with trio.fail_after(1):
                    while await stream.receive_some(65536):
                        pass  # the 503, then end of stream
        finally:
            for stream in silent:
                await stream.aclose()


def test_descriptor_reserve_admits_peers_only_below_the_line() -> None:
    reserve = DescriptorReserve(reserved=64, limit=1024)
    assert reserve.peer_ceiling == 960
    assert reserve.admits(959)
    assert not reserve.admits(960)
    assert not reserve.admits(1023)


def test_a_port_gate_counts_atomically_and_per_address() -> None:
    gate = PortGate("test port", 2, 1, DescriptorReserve(reserved=0, limit=1 << 20))
    with gate.admitted("10.0.0.1"):
        assert gate._over_cap("10.0.0.1") is not None  # per address
        assert gate._over_cap("10.0.0.2") is None
        with gate.admitted("127.0.0.1"), gate.admitted("127.0.0.1"):
            assert gate.active == 3  # admitted() counts; screen() decides beforehand
            assert gate._over_cap("127.0.0.1") is not None  # the port's cap
    assert gate.active == 0
    assert gate.connections_from("10.0.0.1") == 0


def _port(engine: Engine) -> int:
    assert engine.port is not None
    return engine.port
