"""Protected by default (issue 16 item 7): protected mode, the worker port's ``host``, and
``/metrics``.

Non-loopback peers are real: the client socket is bound to one of this machine's own
non-loopback addresses (eth0's; tests/support/network.py) and connects to an engine bound
on 0.0.0.0, so the engine sees a peer that is not on loopback, as it would see another host.
A machine without such an address skips those tests; the decision itself is tested with
explicit addresses, and loopback admission for real, everywhere.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
import trio

from iii_trio.runtime.connections.access import (
    PROTECTED_MODE_TEXT,
    AccessPolicy,
    RefusalLog,
    is_loopback,
)
from iii_trio.runtime.engine import Engine
from iii_trio.runtime.wire.handshake import HandshakeRequest
from tests.runtime.modules.observability.support import otel_entry
from tests.runtime.modules.rest_api.support import http_entry
from tests.runtime.modules.stream.support import stream_entry, stream_port
from tests.support.engine import StartEngine
from tests.support.network import http_upgrade, open_websocket, require_non_loopback

TOKEN = "s3cret-token"


def test_protected_mode_decides_by_peer_address() -> None:
    protected = AccessPolicy(auth_token=None, protected_mode=True)
    for loopback in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        assert is_loopback(loopback)
        assert protected.peer_refusal(loopback) is None
    for outside in ("192.0.2.2", "10.0.0.1", "::ffff:10.0.0.1", "2001:db8::1", "unknown", ""):
        refusal = protected.peer_refusal(outside)
        assert refusal is not None
        assert (refusal.status, refusal.body) == (403, PROTECTED_MODE_TEXT)
    assert "protected_mode: false" in PROTECTED_MODE_TEXT
    assert "auth_token" in PROTECTED_MODE_TEXT
    # A token lifts protected mode (the token is the check then); so does turning it off.
    assert AccessPolicy(auth_token=TOKEN).peer_refusal("192.0.2.2") is None
    assert AccessPolicy(protected_mode=False).peer_refusal("192.0.2.2") is None


def test_metrics_rule_loopback_when_protected_the_token_when_set() -> None:
    protected = AccessPolicy()
    assert protected.endpoint_refusal("127.0.0.1", None) is None
    assert protected.endpoint_refusal("192.0.2.2", None).status == 403  # type: ignore[union-attr]
    with_token = AccessPolicy(auth_token=TOKEN)
    assert with_token.endpoint_refusal("127.0.0.1", None).status == 401  # type: ignore[union-attr]
    assert with_token.endpoint_refusal("192.0.2.2", f"Bearer {TOKEN}") is None
    assert AccessPolicy(protected_mode=False).endpoint_refusal("192.0.2.2", None) is None


def test_refused_peers_are_logged_once_each_and_boundedly() -> None:
    lines: list[str] = []
    refusals = RefusalLog(capacity=3, emit=lines.append)
    for _ in range(5):
        for n in range(10):
            refusals.refused_peer("worker port", f"10.0.0.{n}", "protected mode")
    assert refusals.refused == 50
    assert len(lines) == 4  # three addresses, then one line saying the rest are counted
    assert "further refusals are counted, not logged" in lines[-1]


async def test_loopback_peers_are_admitted_in_protected_mode(start_engine: StartEngine) -> None:
    engine = await start_engine(host="0.0.0.0")
    ws = await open_websocket("127.0.0.1", _port(engine))
    try:
        hello = await ws.receive()
        assert b"workerregistered" in (hello if isinstance(hello, bytes) else hello.encode())
    finally:
        await ws.aclose()


async def test_protected_mode_refuses_non_loopback_peers_on_every_socket(
    start_engine: StartEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """Real sockets from a second local address that is not loopback: the client binds to
    this machine's eth0 address (found by tests/support/network.py; here 192.0.2.2) and
    connects to the engine bound on 0.0.0.0, so the engine's peer is that address. Network
    namespaces (iproute2 is installed and root could use them) are not needed for that."""
    source = require_non_loopback()
    engine = await start_engine(host="0.0.0.0", modules=(stream_entry(host="0.0.0.0"),))
    channel = engine.channels.create_for_worker(None)
    paths = ["/", "/otel", f"/ws/channels/{channel.id}?key={channel.access_key}&dir=read"]
    with caplog.at_level(logging.WARNING, logger="iii_trio.access"):
        for path in paths:
            assert await http_upgrade(source, _port(engine), path, source=source) == (
                403,
                PROTECTED_MODE_TEXT,
            )
        answer = await http_upgrade(source, stream_port(engine), source=source)
        assert answer == (403, PROTECTED_MODE_TEXT)
    refused = [r.getMessage() for r in caplog.records if f"refused {source}" in r.getMessage()]
    assert len(refused) == 1  # once per peer address, not once per socket
    assert engine.connections == {}
    # Loopback, same engine, same moment: admitted.
    assert (await http_upgrade("127.0.0.1", _port(engine), "/otel"))[0] == 101


async def test_a_token_admits_non_loopback_peers_that_send_it(start_engine: StartEngine) -> None:
    source = require_non_loopback()
    engine = await start_engine(host="0.0.0.0", auth_token=TOKEN)
    status, body = await http_upgrade(source, _port(engine), "/", source=source)
    assert status == 401
    assert "Bearer" in body
    headers = {"Authorization": f"Bearer {TOKEN}"}
    ws = await open_websocket(source, _port(engine), headers=headers, source=source)
    try:
        assert "workerregistered" in str(await ws.receive())
        [conn] = engine.connections.values()
        assert conn.session.peer == source
    finally:
        await ws.aclose()


async def test_protected_mode_false_opens_the_port(start_engine: StartEngine) -> None:
    source = require_non_loopback()
    engine = await start_engine(host="0.0.0.0", protected_mode=False)
    assert (await http_upgrade(source, _port(engine), "/otel", source=source))[0] == 101


async def test_host_binds_the_worker_port_to_one_address(start_engine: StartEngine) -> None:
    source = require_non_loopback()
    engine = await start_engine(host="127.0.0.1", protected_mode=False)
    with pytest.raises(OSError, match="connect"):  # nothing listens on the other address at all
        await trio.open_tcp_stream(source, _port(engine))
    assert (await http_upgrade("127.0.0.1", _port(engine), "/otel"))[0] == 101


async def test_metrics_is_loopback_only_in_protected_mode(start_engine: StartEngine) -> None:
    source = require_non_loopback()
    engine = await start_engine(modules=(http_entry(host="0.0.0.0"), otel_entry()))
    port = _http_port(engine)
    async with httpx.AsyncClient(timeout=10) as local:
        assert (await local.get(f"http://127.0.0.1:{port}/metrics")).status_code == 200
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(timeout=10, transport=transport) as outside:
        response = await outside.get(f"http://{source}:{port}/metrics")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert "protected_mode: false" in response.json()["error"]["message"]


async def test_metrics_needs_the_token_when_one_is_set(start_engine: StartEngine) -> None:
    engine = await start_engine(auth_token=TOKEN, modules=(http_entry(), otel_entry()))
    url = f"http://127.0.0.1:{_http_port(engine)}/metrics"
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(url)).status_code == 401
        assert (await http.get(url, headers={"authorization": "Bearer wrong"})).status_code == 401
        good = await http.get(url, headers={"authorization": f"Bearer {TOKEN}"})
    assert good.status_code == 200
    assert "iii_" in good.text


def test_token_check_is_the_bearer_header() -> None:
    policy = AccessPolicy(auth_token=TOKEN)
    good = HandshakeRequest("/", [(b"authorization", f"Bearer {TOKEN}".encode())])
    assert policy.token_refusal(good) is None
    for headers in ([], [(b"authorization", b"Bearer nope")], [(b"authorization", TOKEN.encode())]):
        refusal = policy.token_refusal(HandshakeRequest("/", headers))
        assert refusal is not None
        assert refusal.status == 401


def _port(engine: Engine) -> int:
    assert engine.port is not None
    return engine.port


def _http_port(engine: Engine) -> int:
    module: Any = engine.modules["rest_api"]
    port: int = module.port
    return port
