"""RestApiModule (``modules::api::RestApiModule``, ``iii-http``; spec/modules.md §3, D5, D6).

HTTP/1.1 on h11 (one task per connection, keep-alive, a header-read deadline, TCP_NODELAY).
The request's ``default_timeout`` starts once its head is in, so a body that trickles in
counts against it too (408 when it is not complete in time).
Each request is matched in the route table, admitted (at most ``concurrency_request_limit``
execute, as many more wait in FIFO order, beyond that 503), then its condition and function
are called through the router, so the request is a live invocation whose deadline is what is
left of ``default_timeout``. Every answer, errors included, carries the CORS headers.

Not in this build: the ``request_body`` / ``response`` channels and streamed bodies (§3.5);
a non-JSON body reaches the function as ``body: null``.
"""

from __future__ import annotations

import logging
import secrets
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

import h11
import orjson
import trio

from iii_trio.runtime.config_modules import CorsConfig, RestApiConfig
from iii_trio.runtime.errors import InvocationError, TriggerConfigError
from iii_trio.runtime.modules.base import EngineModule
from iii_trio.runtime.modules.rest_api.routes import ROUTED_METHODS, Match, RouteTable

if TYPE_CHECKING:
    from iii_trio.runtime.config import ModuleEntry
    from iii_trio.runtime.engine import Engine
    from iii_trio.runtime.registry import Binding, EngineTriggerType

log = logging.getLogger("iii_trio.http")

READ_SIZE = 65536
HEADER_DEADLINE_SECONDS = 10.0  # a client must send its request head within this
RETRY_AFTER_SECONDS = 1


def create(engine: Engine, entry: ModuleEntry) -> RestApiModule:
    assert isinstance(entry.config, RestApiConfig)
    return RestApiModule(engine, entry.kind, entry.config)


class HttpError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or []


class HttpTrigger:
    """The ``http`` trigger type: ``{api_path, http_method?, condition_function_id?}``."""

    id = "http"
    description = "Serves an HTTP route on the API port"

    def __init__(self) -> None:
        self.routes = RouteTable()

    def bind(self, binding: Binding) -> None:
        config = binding.config
        path = config.get("api_path") if isinstance(config, dict) else None
        if not isinstance(path, str):
            raise TriggerConfigError("api_path is required for http triggers")
        method = config.get("http_method") or "GET"
        if not isinstance(method, str):
            raise TriggerConfigError("http_method must be a string")
        method = method.upper()
        if method not in ROUTED_METHODS:
            log.warning("http trigger %s: method %s is stored but never routed", binding.id, method)
        self.routes.add(method, path, binding)

    def unbind(self, binding: Binding) -> None:
        config = binding.config
        method = str(config.get("http_method") or "GET").upper()
        self.routes.remove(method, config["api_path"], binding)


class Cors:
    def __init__(self, config: CorsConfig | None) -> None:
        self.origins = list(config.allowed_origins or []) if config else []
        self.methods = [m.upper() for m in (config.allowed_methods or [])] if config else []
        self.headers = list(config.allowed_headers or []) if config else []

    def response_headers(self, origin: str | None) -> list[tuple[str, str]]:
        if not self.origins or "*" in self.origins:
            return [("access-control-allow-origin", "*"), ("access-control-expose-headers", "*")]
        if origin is not None and origin in self.origins:
            return [("access-control-allow-origin", origin), ("vary", "Origin")]
        return [("vary", "Origin")]

    def preflight(self, origin: str | None, requested_headers: str | None) -> list[tuple[str, str]]:
        methods = ", ".join(self.methods) if self.methods else "*"
        if not self.headers or "*" in self.headers:
            allowed = requested_headers or "*"
        else:
            allowed = ", ".join(self.headers)
        return [
            *self.response_headers(origin),
            ("access-control-allow-methods", methods),
            ("access-control-allow-headers", allowed),
        ]


class RestApiModule(EngineModule):
    def __init__(self, engine: Engine, name: str, config: RestApiConfig) -> None:
        super().__init__(engine, name)
        self.config = config
        self.trigger = HttpTrigger()
        self.cors = Cors(config.cors)
        self.port: int | None = None
        limit = config.concurrency_request_limit
        self._executing = trio.Semaphore(limit)
        self._waiting = 0
        self.served = 0

    def trigger_types(self) -> list[EngineTriggerType]:
        return [self.trigger]

    def introspect(self) -> dict[str, Any]:
        return {"port": self.port, "routes": self.trigger.routes.count, "waiting": self._waiting}

    async def serve(self, task_status: trio.TaskStatus[Any]) -> None:
        listeners = await trio.open_tcp_listeners(self.config.port, host=self.config.host)
        self.port = listeners[0].socket.getsockname()[1]
        log.info("HTTP API listening on http://%s:%s", self.config.host, self.port)
        async with trio.open_nursery() as nursery:
            task_status.started()
            await trio.serve_listeners(self._connection, listeners, handler_nursery=nursery)

    # --- one connection ------------------------------------------------------------------------

    async def _connection(self, stream: trio.SocketStream) -> None:
        try:
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            http = h11.Connection(h11.SERVER, max_incomplete_event_size=65536)
            while True:
                request = await self._read_request(stream, http)
                if request is None:
                    break
                head, body, deadline = request
                status, headers, payload = await self._answer(head, body, deadline)
                await self._send(stream, http, status, headers, payload)
                if http.our_state is h11.MUST_CLOSE or http.their_state is h11.MUST_CLOSE:
                    break
                http.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            await self._refuse(stream, http, exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass
        finally:
            await stream.aclose()

    async def _refuse(
        self, stream: trio.SocketStream, http: h11.Connection, exc: h11.RemoteProtocolError
    ) -> None:
        """A request h11 cannot parse gets its status hint (400, 431, 505...) in the error
        envelope, then the connection closes; nothing was routed."""
        if http.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return  # a response is already under way: closing is all that is left
        status = exc.error_status_hint
        envelope = {"error": {"code": "bad_request", "message": f"malformed request: {exc}"}}
        headers = [
            *self.cors.response_headers(None),
            ("content-type", "application/json"),
            ("connection", "close"),
        ]
        try:
            await self._send(stream, http, status, headers, orjson.dumps(envelope))
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass

    async def _read_request(
        self, stream: trio.SocketStream, http: h11.Connection
    ) -> tuple[h11.Request, bytes | HttpError, float] | None:
        """The next request, its body (or the error to answer) and its deadline (trio time,
        from the arrival of the head); None at the end."""
        head: h11.Request | None = None
        body = bytearray()
        limit = self.config.body_limit
        with trio.move_on_after(HEADER_DEADLINE_SECONDS) as head_wait:
            while head is None:
                event = await self._next_event(stream, http)
                if event is None:
                    return None
                if isinstance(event, h11.Request):
                    head = event
        if head_wait.cancelled_caught:
            log.info("http: a client sent no request head within %.0f s", HEADER_DEADLINE_SECONDS)
            return None
        assert head is not None
        deadline = trio.current_time() + self.config.default_timeout / 1000
        length = dict(head.headers).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return head, _too_large(limit), deadline  # answered unread; then closed
        with trio.move_on_at(deadline):
            while True:
                event = await self._next_event(stream, http)
                if event is None:
                    return None
                if isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > limit:
                        return head, _too_large(limit), deadline
                elif isinstance(event, h11.EndOfMessage):
                    return head, bytes(body), deadline
        timeout = self.config.default_timeout
        late = HttpError(408, "request_timeout", f"the body did not arrive within {timeout} ms")
        return head, late, deadline

    async def _next_event(self, stream: trio.SocketStream, http: h11.Connection) -> Any:
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(READ_SIZE)
                http.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            return event

    async def _send(
        self,
        stream: trio.SocketStream,
        http: h11.Connection,
        status: int,
        headers: list[tuple[str, str]],
        payload: bytes,
    ) -> None:
        headers = [*headers, ("content-length", str(len(payload)))]
        if http.their_state is not h11.DONE:  # the request body was not read: close after
            headers.append(("connection", "close"))
        data = http.send(h11.Response(status_code=status, headers=headers)) or b""
        data += http.send(h11.Data(data=payload)) or b""
        data += http.send(h11.EndOfMessage()) or b""
        await stream.send_all(data)

    # --- one request ---------------------------------------------------------------------------

    async def _answer(
        self, head: h11.Request, body: bytes | HttpError, deadline: float
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {k.decode().lower(): _text(v) for k, v in head.headers}
        origin = headers.get("origin")
        method = head.method.decode().upper()
        if method == "OPTIONS" and origin and "access-control-request-method" in headers:
            return (
                200,
                self.cors.preflight(origin, headers.get("access-control-request-headers")),
                b"",
            )
        cors = self.cors.response_headers(origin)
        try:
            if isinstance(body, HttpError):
                raise body
            target = head.target.decode()
            status, extra, payload = await self._route(method, target, headers, body, deadline)
            return status, [*cors, *extra], payload
        except HttpError as exc:
            error_id = secrets.token_hex(8)
            log.info(
                "http %s %s: %s %s (%s)",
                method,
                head.target.decode(),
                exc.status,
                exc.message,
                error_id,
            )
            envelope = {"error": {"code": exc.code, "message": exc.message, "error_id": error_id}}
            json_type = [("content-type", "application/json")]
            return exc.status, [*cors, *json_type, *exc.headers], orjson.dumps(envelope)

    async def _route(
        self, method: str, target: str, headers: dict[str, str], body: bytes, deadline: float
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        url = urlsplit(target)
        match, allowed = self.trigger.routes.lookup(method, url.path)
        if match is None:
            if allowed:
                raise HttpError(
                    405,
                    "method_not_allowed",
                    f"{method} is not allowed here",
                    [("allow", ", ".join(allowed))],
                )
            raise HttpError(404, "not_found", f"no route for {url.path}")
        data = self._input(method, url.query, headers, body, match)
        with trio.move_on_at(deadline) as timer:
            result = await self._admitted(match.binding, data, deadline)
            return _response(result)
        assert timer.cancelled_caught
        raise HttpError(504, "timeout", f"no answer within {self.config.default_timeout} ms")

    def _input(
        self, method: str, query: str, headers: dict[str, str], body: bytes, match: Match
    ) -> dict[str, Any]:
        try:
            query_params = dict(
                parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
            )
        except ValueError:
            raise HttpError(400, "invalid_query", "the query string cannot be parsed") from None
        parsed: Any = None
        if "application/json" in headers.get("content-type", "") and body:
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise HttpError(400, "invalid_json", f"invalid JSON body: {exc}") from None
        pattern = match.binding.config["api_path"]
        return {
            "query_params": query_params,
            "path_params": {name: unquote(value) for name, value in match.params.items()},
            "headers": headers,
            "path": pattern,
            "method": method,
            "body": parsed,
            "trigger": {"type": "http", "path": pattern, "method": method},
        }

    async def _admitted(self, binding: Binding, data: dict[str, Any], deadline: float) -> Any:
        """Wait for one of the N execution slots (FIFO), then call; 503 when N more wait."""
        try:
            self._executing.acquire_nowait()
        except trio.WouldBlock:
            if self._waiting >= self.config.concurrency_request_limit:
                retry = [("retry-after", str(RETRY_AFTER_SECONDS))]
                raise HttpError(503, "overloaded", "too many requests", retry) from None
            self._waiting += 1  # released slots go to waiters in arrival order
            try:
                await self._executing.acquire()
            finally:
                self._waiting -= 1
        try:
            return await self._call(binding, data, deadline)
        finally:
            self._executing.release()

    async def _call(self, binding: Binding, data: dict[str, Any], deadline: float) -> Any:
        call = self.engine.router.call
        left_ms = max(1, int((deadline - trio.current_time()) * 1000))
        condition = (binding.config or {}).get("condition_function_id")
        try:
            if (
                condition
                and await call(condition, data, caller_module="http", timeout_ms=left_ms) is False
            ):
                raise HttpError(422, "condition_not_met", "the request condition was not met")
            left_ms = max(1, int((deadline - trio.current_time()) * 1000))
            result = await call(binding.function_id, data, caller_module="http", timeout_ms=left_ms)
        except InvocationError as exc:
            if exc.code == "timeout":
                raise HttpError(504, "timeout", exc.message) from None
            raise HttpError(500, exc.code, exc.message) from None
        if result is None:  # nothing to answer with: the request ends at the deadline (§3.4)
            await trio.sleep_forever()
        return result


def _too_large(limit: int) -> HttpError:
    return HttpError(413, "payload_too_large", f"body larger than {limit} bytes")


def _text(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return ""


def _response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    if not isinstance(result, dict):
        return 200, [("content-type", "application/json")], b"{}"
    status = result.get("status_code", 200)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        status = 200
    headers: list[tuple[str, str]] = []
    raw_headers = result.get("headers")
    if isinstance(raw_headers, dict):
        headers = [(str(k), str(v)) for k, v in raw_headers.items()]
    elif isinstance(raw_headers, list):
        for line in raw_headers:
            if isinstance(line, str) and ":" in line:
                name, value = line.split(":", 1)
                headers.append((name.strip(), value.strip()))
    content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
    body = result.get("body", {})
    if isinstance(body, str) and content_type is not None and "json" not in content_type:
        return status, headers, body.encode()
    if content_type is None:
        headers.append(("content-type", "application/json"))
    return status, headers, orjson.dumps(body)
