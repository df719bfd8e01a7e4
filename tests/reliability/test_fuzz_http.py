"""Hypothesis against the RestApiModule of a live engine process: request lines, methods,
paths, query strings, headers, bodies, framing (Content-Length, chunked) and random bytes.
After every request the engine is still running, logged no traceback, answered with a
well-formed HTTP response or closed the connection, and a good request still gets 200."""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.reliability.fuzz_settings import fuzz_settings
from tests.reliability.support import http_block, modules, record
from tests.reliability.sync_clients import EngineServer, GoodPair, SyncWorker, engine_server
from tests.support.ports import free_port

EXAMPLES = 300
ANSWER_TIMEOUT = 5.0
tried: Counter[str] = Counter()
statuses: Counter[str] = Counter()

# Routes bound to engine functions, so nothing in this process has to answer them.
ROUTES = [
    ("GET", "good", "engine::workers::list"),
    ("POST", "items/:id", "engine::invocations::get"),  # fails: no such invocation
    ("PUT", "a/:x/b/:y", "engine::actors::tree"),
    ("DELETE", "gone", "fz::missing"),  # no such function
]

token = st.text(
    alphabet="!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
method = (
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"])
    | token.filter(bool)
    | st.binary(max_size=10).map(lambda b: b.decode("latin-1"))
)
segment = st.sampled_from(
    ["good", "items", "a", "b", "gone", "", "..", "%2F", "%ZZ", "%00"]
) | st.text(max_size=12)
path = st.lists(segment, max_size=6).map(lambda parts: "/" + "/".join(parts))
query = (
    st.none()
    | st.text(max_size=40)
    | st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=4).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)
    )
)
header_name = (
    st.sampled_from(
        ["Content-Type", "Origin", "Access-Control-Request-Method", "Host", "Connection", "Expect"]
    )
    | token.filter(bool)
    | st.text(max_size=10)
)
header_value = st.sampled_from(
    ["application/json", "text/plain", "close", "keep-alive", "100-continue", "*"]
) | st.binary(max_size=60).map(lambda b: b.decode("latin-1"))
body = st.binary(max_size=400) | st.sampled_from(
    [b"{}", b'{"a": 1}', b"[1, 2", b"\xff\xfe", b"null", b'{"a":' * 300]
)
framing = st.sampled_from(
    ["length", "none", "wrong length", "huge length", "chunked", "bad chunked"]
)


def encode(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


printable = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
route_path = st.sampled_from(
    ["/good", "/items/{}", "/a/{}/b/{}", "/gone", "/items", "/good/"]
).flatmap(
    lambda pattern: st.lists(
        st.text(alphabet="abcXYZ019-._~%20", min_size=1, max_size=10), min_size=2, max_size=2
    ).map(lambda values: pattern.format(*values))
)


@st.composite
def well_formed(draw: st.DrawFn) -> bytes:
    """Requests h11 accepts, so they reach the route table, the admission and the calls."""
    verb = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]))
    target = draw(route_path)
    q = draw(query)
    if q:
        target += "?" + "".join(c if 0x20 < ord(c) < 0x7F else "%41" for c in q)
    headers = [(b"Host", b"127.0.0.1")]
    names = st.sampled_from(["Content-Type", "Origin", "Access-Control-Request-Method", "X-A"])
    for name, value in draw(st.lists(st.tuples(names, printable), max_size=5)):
        headers.append((name.encode(), value.strip().encode()))
    payload = draw(body)
    if draw(st.booleans()):
        headers.append((b"Content-Type", b"application/json"))
    headers.append((b"Content-Length", str(len(payload)).encode()))
    lines = b"".join(n + b": " + v + b"\r\n" for n, v in headers)
    return encode(f"{verb} {target} HTTP/1.1\r\n") + lines + b"\r\n" + payload


@st.composite
def request(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["well formed"] * 3 + ["shaped", "random bytes", "request line"]))
    if kind == "well formed":
        return kind, draw(well_formed())
    if kind == "random bytes":
        return kind, draw(st.binary(max_size=600))
    target = draw(path)
    q = draw(query)
    if q is not None:
        target += "?" + q
    line = encode(f"{draw(method)} {target} ") + draw(
        st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"", b"HTTP/1.1 extra"])
    )
    if kind == "request line":
        return kind, line + b"\r\n\r\n"
    headers = [
        (encode(n), encode(v))
        for n, v in draw(st.lists(st.tuples(header_name, header_value), max_size=8))
    ]
    payload = draw(body)
    how = draw(framing)
    if how == "length":
        headers.append((b"Content-Length", str(len(payload)).encode()))
    elif how == "wrong length":
        headers.append((b"Content-Length", str(draw(st.integers(-5, 1000))).encode()))
    elif how == "huge length":
        headers.append((b"Content-Length", b"9" * draw(st.integers(10, 40))))
    elif how in ("chunked", "bad chunked"):
        headers.append((b"Transfer-Encoding", b"chunked"))
        if how == "chunked":
            payload = (
                b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload) if payload else b"0\r\n\r\n"
            )
        else:
            payload = b"zz\r\n" + payload
    if draw(st.booleans()):
        headers.append((b"Host", b"127.0.0.1"))
    head = line + b"\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in headers) + b"\r\n"
    return kind, head + payload


def exchange(port: int, data: bytes) -> bytes:
    """Send one raw request, close our side, read until the engine closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return b""
        answer = b""
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
        else:
            raise AssertionError(f"no end of answer within {ANSWER_TIMEOUT} s: {answer[:200]!r}")
        return answer


class HttpTarget:
    def __init__(self, engine: EngineServer, http_port: int) -> None:
        self.engine = engine
        self.port = http_port
        self.good = GoodPair(engine.port)
        self.owner = SyncWorker(engine.port)  # owns the routes for the whole module
        try:
            self._bind_routes()
        except BaseException:
            self.close()
            raise

    def _bind_routes(self) -> None:
        for n, (verb, route, function_id) in enumerate(ROUTES):
            self.owner.send(
                {
                    "type": "registertrigger",
                    "id": f"route-{n}",
                    "trigger_type": "http",
                    "function_id": function_id,
                    "config": {"api_path": route, "http_method": verb},
                }
            )
        deadline = time.monotonic() + 10
        while not self.good_request_works():
            assert time.monotonic() < deadline, "the routes never appeared"
            time.sleep(0.05)  # real time: the engine process binds the routes

    def good_request_works(self) -> bool:
        answer = exchange(self.port, b"GET /good HTTP/1.1\r\nHost: x\r\n\r\n")
        return answer.startswith(b"HTTP/1.1 200 ")

    def close(self) -> None:
        self.good.close()
        self.owner.close()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpTarget]:
    directory: Path = tmp_path_factory.mktemp("fuzz-http")
    http_port = free_port()
    config = "default_timeout: 2000\n" + modules(http_block(http_port, default_timeout=2000))
    with engine_server(directory, config) as server:
        target = HttpTarget(server, http_port)
        yield target
        target.close()
        server.assert_healthy()
    record("fuzz_http", inputs=sum(tried.values()), by_kind=dict(tried), answers=dict(statuses))


@fuzz_settings(EXAMPLES)
@given(request())
def test_no_request_hurts_the_engine_or_another_client(
    target: HttpTarget, case: tuple[str, bytes]
) -> None:
    kind, data = case
    tried[kind] += 1
    answer = exchange(target.port, data)
    if answer:
        assert answer.startswith(b"HTTP/1.1 "), answer[:200]
        status = answer[9:12]
        assert status.isdigit(), answer[:200]
        assert 100 <= int(status) <= 599, answer[:200]
        assert b"Traceback" not in answer
        statuses[status.decode()] += 1
    else:
        statuses["closed"] += 1
    assert target.good_request_works()
    target.good.check()
    target.engine.assert_healthy()
