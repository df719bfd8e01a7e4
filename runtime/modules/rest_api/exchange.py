"""One HTTP request through the RestApiModule, from its head to its answer (spec §3.3-3.5).

A request is routed and admitted on its head alone; only then is its body read. A JSON body
is read whole and parsed into ``body`` (400 ``invalid_json``, or ``invalid_payload`` past
:data:`~iii_trio.runtime.wire.protocol.MAX_JSON_DEPTH`, before any function is called); any
other body streams as binary frames into the request's ``request_body`` channel while the
function runs. A result that cannot be written as JSON is answered 500 ``invalid_payload``.
Each request gets its own pair of channels, removed when it ends; the engine holds the
writing side of ``request_body`` and the reading side of ``response``.

The answer is decided by a race (§3.4): the function's result, or the worker writing to the
``response`` channel. Text frames there are control messages (``set_status``,
``set_headers``); the streamed response starts at the first binary frame or when the channel
closes, and its body is every binary frame after that. ``default_timeout`` bounds the time
to that decision (504); once a response streams, each frame must follow the last within
``default_timeout`` or the connection is closed, so a stalled stream holds nothing forever.
"""

from __future__ import annotations

import logging
import math
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs
import h11
import orjson
import trio

from iii_trio.runtime.calls import tracing
from iii_trio.runtime.clock import now_ms
from iii_trio.runtime.connections.admission import peer_address
from iii_trio.runtime.modules.rest_api.http_io import HttpConnection, HttpError, too_large
from iii_trio.runtime.wire.protocol import MAX_JSON_DEPTH, JsonRejected, PayloadRejected, loads

CALLER = "http"  # how the requests' calls name their caller in engine::invocations::list

if TYPE_CHECKING:
    from iii_trio.runtime.calls.invocation import Invocation, QueuedCall
    from iii_trio.runtime.calls.registry import Binding
    from iii_trio.runtime.connections.channels import Channel
    from iii_trio.runtime.modules.context import HttpEndpoint
    from iii_trio.runtime.modules.rest_api.module import RestApiModule
    from iii_trio.runtime.modules.rest_api.routes import Match

log = logging.getLogger("iii_trio.http")

JSON = [("content-type", "application/json")]
# Framing is h11's job (chunked or close-delimited); a worker's value could only contradict it.
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


@attrs.define
class FullResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@attrs.define
class StreamedResponse:
    """The head of a response written through the ``response`` channel."""

    status: int = 200
    headers: dict[str, str] = attrs.field(factory=dict)
    first_chunk: bytes | None = None

    def apply_control(self, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            log.info("http: ignored a response channel text frame that is not JSON")
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "set_status":
            status = message.get("status_code")
            if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
                self.status = status
        elif kind == "set_headers" and isinstance(message.get("headers"), dict):
            for name, value in message["headers"].items():
                if name.lower() not in FRAMING_HEADERS:
                    self.headers[name.lower()] = str(value)
        else:
            log.info("http: ignored an unknown response control message %r", kind)


Outcome = FullResponse | StreamedResponse | HttpError


class Exchange:
    def __init__(self, module: RestApiModule, conn: HttpConnection, head: h11.Request) -> None:
        self.module = module
        self.conn = conn
        self.head = head
        self.headers = {k.decode().lower(): _text(v) for k, v in head.headers}
        self.method = head.method.decode().upper()
        self.target = head.target.decode("ascii", "replace")
        self.cors: list[tuple[str, str]] = []
        self.outcome: Outcome | None = None
        self.body_error: HttpError | None = None  # the streamed body crossed body_limit
        self.client_gone = False
        self.started = False  # a streamed response head went out: no error answer is possible
        self.status: int | None = None  # of the answer sent, for the request's span
        self.deadline = trio.CancelScope()  # default_timeout, from the head to the decision
        self.queued: QueuedCall | None = None  # the request's row until its function is called
        self.body_bytes = 0  # of the JSON body held, counted in the module's BodyBytes

    @property
    def _without_body(self) -> bool:
        """HTTP/1.1 framing: a request has a body only with a length or transfer-encoding."""
        headers = self.headers
        return "transfer-encoding" not in headers and headers.get("content-length", "0") == "0"

    @property
    def _what(self) -> tuple[str, str]:
        return self.method, self.target

    async def run_traced(self) -> None:
        """:meth:`run` inside a server span, parented by a ``traceparent`` header."""
        url = urlsplit(self.target)
        attributes: dict[str, Any] = {
            "http.request.method": self.method,
            "url.path": url.path,
            "url.scheme": "http",
        }
        if url.query:
            attributes["url.query"] = url.query
        name = f"{self.method} {url.path}"
        parent = self.headers.get("traceparent")
        with self.module.ctx.span(
            name, kind="server", attributes=attributes, traceparent=parent
        ) as span:
            try:
                await self.run()
            finally:
                if span is not None and self.status is not None:
                    span.attributes["http.response.status_code"] = self.status
                    if self.status >= 500:
                        span.fail(f"HTTP {self.status}")

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.module.bodies.release(self.body_bytes)
            self.body_bytes = 0

    async def _run(self) -> None:
        origin = self.headers.get("origin")
        if self.method == "OPTIONS" and origin and "access-control-request-method" in self.headers:
            self.conn.finish_buffered_body()
            preflight = self.module.cors.preflight(
                origin, self.headers.get("access-control-request-headers")
            )
            self.status = 200
            await self.conn.send_full(200, preflight, b"")
            return
        self.cors = self.module.cors.response_headers(origin)
        try:
            await self._serve()
        except HttpError as exc:
            if self.started:
                return  # the head is out; the unfinished response closes the connection
            await self._answer_error(exc)
        if self.client_gone:
            raise trio.BrokenResourceError("the client left mid-request")

    async def _answer_error(self, exc: HttpError) -> None:
        error_id = secrets.token_hex(8)
        log.info("http %s %s: %s %s (%s)", *self._what, exc.status, exc.message, error_id)
        envelope = {"error": {"code": exc.code, "message": exc.message, "error_id": error_id}}
        self.conn.finish_buffered_body()
        self.status = exc.status
        await self.conn.send_full(
            exc.status, [*self.cors, *JSON, *exc.headers], orjson.dumps(envelope)
        )

    async def _serve(self) -> None:
        config = self.module.config
        length = self.headers.get("content-length", "")
        if length.isdigit() and int(length) > config.body_limit:
            raise too_large(config.body_limit)  # answered unread; the connection then closes
        url = urlsplit(self.target)
        match, allowed = self.module.trigger.routes.lookup(self.method, url.path)
        endpoint = self.module.ctx.http_endpoint(url.path) if match is None else None
        if endpoint is not None and self.method == "GET":
            await self._answer_endpoint(endpoint)
            return
        if match is None:
            if allowed:
                message = f"{self.method} is not allowed here"
                raise HttpError(405, "method_not_allowed", message, [("allow", ", ".join(allowed))])
            raise HttpError(404, "not_found", f"no route for {url.path}")
        _name_server_span(self.method, match)
        deadline = trio.current_time() + config.default_timeout / 1000
        arrived_ms = now_ms()
        ctx = self.module.ctx
        json_body = "application/json" in self.headers.get("content-type", "")
        # One deadline up to the decision; a streamed response lifts it (see _stream).
        reading_body = False
        with trio.move_on_at(deadline) as self.deadline:
            # Listed (queued) from here, from its head on; its invocation takes over the row.
            self.queued = ctx.queue(
                match.binding.function_id,
                caller=CALLER,
                timeout_ms=config.default_timeout,
                started_at_ms=arrived_ms,
            )
            try:
                await self.module.admit()  # with its head only: the body waits in the socket
                try:
                    reading_body = json_body
                    body = await self._read_body() if json_body else None
                    reading_body = False
                    data = request_input(self.method, url.query, self.headers, body, match)
                    del body  # parsed: only `data` is kept
                    await self._exchange(match.binding, data, stream_body=not json_body)
                finally:
                    self.module.release()
            finally:
                ctx.unqueue(self.queued)
        if reading_body:  # a slow sender, not a slow function
            message = f"the body did not arrive within {config.default_timeout} ms"
            raise HttpError(408, "request_timeout", message)
        if self.outcome is None and not self.client_gone:
            raise HttpError(504, "timeout", f"no answer within {config.default_timeout} ms")

    async def _read_body(self) -> bytearray:
        """The whole JSON body, counted as it arrives in the module's :class:`BodyBytes`."""

        def held(size: int) -> None:
            self.body_bytes += size
            self.module.bodies.hold(size)

        return await self.conn.read_body(self.module.config.body_limit, held)

    async def _answer_endpoint(self, endpoint: HttpEndpoint) -> None:
        """An engine endpoint served on this port (``/metrics``), where no route matched:
        loopback only in protected mode, the engine's token when one is set (access.py)."""
        peer = peer_address(self.conn.stream)[0]
        refused = self.module.ctx.access.endpoint_refusal(peer, self.headers.get("authorization"))
        if refused is not None:
            code = "unauthorized" if refused.status == 401 else "forbidden"
            raise HttpError(refused.status, code, refused.body.strip())
        status, headers, payload = await endpoint()
        self.conn.finish_buffered_body()
        self.status = status
        await self.conn.send_full(status, [*self.cors, *headers], payload)

    async def _exchange(self, binding: Binding, data: dict[str, Any], *, stream_body: bool) -> None:
        ctx = self.module.ctx
        try:
            request_body, response = ctx.open_channel(), ctx.open_channel()
        except RuntimeError as exc:
            raise HttpError(503, "overloaded", str(exc)) from None
        request_body.writer_taken = response.reader_taken = True  # the engine's own sides
        data["request_body"] = request_body.ref("read")
        data["response"] = response.ref("write")
        if stream_body and self._without_body:
            self.conn.finish_buffered_body()  # just its end: no task to copy nothing
        try:
            if stream_body and not self.conn.request_complete:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump_body, request_body, nursery.cancel_scope)
                    await self._respond(binding, data, response)
                    nursery.cancel_scope.cancel()  # a body nobody read: the connection closes
            else:
                request_body.end()  # nothing (more) to stream
                await self._respond(binding, data, response)
        finally:
            ctx.close_channel(request_body)
            ctx.close_channel(response)
        if self.body_error is not None:
            raise self.body_error
        if isinstance(self.outcome, HttpError):
            raise self.outcome
        if isinstance(self.outcome, FullResponse):
            outcome = self.outcome
            self.status = outcome.status
            await self.conn.send_full(outcome.status, [*self.cors, *outcome.headers], outcome.body)

    async def _respond(self, binding: Binding, data: dict[str, Any], response: Channel) -> None:
        """Decide the answer and stream it when it streams; never raises an HttpError (the
        caller answers once the request body pump has stopped)."""
        self.outcome = await self._decide(binding, data, response)
        if isinstance(self.outcome, StreamedResponse):
            try:
                await self._stream(self.outcome, response)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.client_gone = True
            except h11.LocalProtocolError as exc:  # e.g. a header h11 cannot send
                log.warning("http %s %s: response stream failed: %s", *self._what, exc)
                self.client_gone = True

    async def _decide(self, binding: Binding, data: dict[str, Any], response: Channel) -> Outcome:
        """The function's result, unless the worker writes to the response channel first."""
        module = self.module
        try:
            assert self.queued is not None
            invocation = await module.start_route(
                binding, data, self.queued, self.deadline.deadline
            )
            if not response.writer_taken:
                # The common case: a result and no channel. A writer arriving on the response
                # channel stops this wait, and the slower race below decides.
                with trio.CancelScope() as waiting:
                    response.on_writer = waiting.cancel
                    await invocation.finished.wait()
                response.on_writer = None
            if invocation.finished.is_set():
                result = await module.result_of(invocation)  # at once
                if result is not None:
                    return full_response(result)
                return await streamed_head(response)  # no result to answer with
        except HttpError as exc:
            return exc
        return await self._race(invocation, response)

    async def _race(self, invocation: Invocation, response: Channel) -> Outcome:
        """The function's result and the response channel race; the first to answer wins."""
        decided: list[Outcome] = []
        async with trio.open_nursery() as race:

            async def by_result() -> None:
                try:
                    result = await self.module.result_of(invocation)
                    if result is None:
                        return  # nothing to answer with: the channel or the deadline decides
                    decided.append(full_response(result))
                except HttpError as exc:
                    decided.append(exc)
                race.cancel_scope.cancel()

            async def by_channel() -> None:
                decided.append(await streamed_head(response))
                race.cancel_scope.cancel()

            race.start_soon(by_result)
            race.start_soon(by_channel)
        return decided[0]

    async def _stream(self, head: StreamedResponse, response: Channel) -> None:
        self.started = True
        self.deadline.deadline = math.inf  # from here each frame has its own idle deadline
        self.status = head.status
        await self.conn.start(head.status, [*self.cors, *head.headers.items()])
        if head.first_chunk is not None:
            await self.conn.send_data(head.first_chunk)
            idle_seconds = self.module.config.default_timeout / 1000
            while True:
                with trio.move_on_after(idle_seconds) as idle:
                    try:
                        message = await response.receive.receive()
                    except trio.EndOfChannel:
                        break
                if idle.cancelled_caught:
                    log.info("http %s %s: response stream stalled; closing", *self._what)
                    return  # unfinished: the connection closes
                if isinstance(message, bytes):
                    await self.conn.send_data(message)
        await self.conn.end()

    async def _pump_body(self, channel: Channel, exchange: trio.CancelScope) -> None:
        """Copy the request body into the ``request_body`` channel as it arrives."""
        limit = self.module.config.body_limit
        received = 0
        try:
            while True:
                event = await self.conn.next_event()
                if event is None:
                    self.client_gone = True
                    exchange.cancel()
                    return
                if isinstance(event, h11.Data):
                    received += len(event.data)
                    if received > limit:
                        self.body_error = too_large(limit)
                        exchange.cancel()
                        return
                    await channel.send.send(bytes(event.data))  # waits while the reader lags
                elif isinstance(event, h11.EndOfMessage):
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            self.client_gone = True
            exchange.cancel()
        finally:
            channel.end()


async def streamed_head(channel: Channel) -> StreamedResponse:
    """Control messages up to the first binary frame, or to the channel's end."""
    head = StreamedResponse()
    while True:
        try:
            message = await channel.receive.receive()
        except trio.EndOfChannel:
            return head
        if isinstance(message, bytes):
            head.first_chunk = message
            return head
        head.apply_control(message)


def request_input(
    method: str, query: str, headers: dict[str, str], body: bytearray | None, match: Match
) -> dict[str, Any]:
    """The function input for a request (§3.3), without its channel refs."""
    try:
        query_params = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise HttpError(400, "invalid_query", "the query string cannot be parsed") from None
    parsed: Any = None
    if body:
        try:
            parsed = loads(body)
        except PayloadRejected as exc:
            message = f"the JSON body {exc.reason} (MAX_JSON_DEPTH {MAX_JSON_DEPTH})"
            raise HttpError(400, exc.code, message) from None
        except JsonRejected as exc:
            raise HttpError(400, "invalid_json", f"invalid JSON body: {exc.reason}") from None
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


def full_response(result: Any) -> FullResponse:
    """A function result as the HTTP response (§3.4); 500 ``invalid_payload`` for a body
    that cannot be written as JSON (too deep for the encoder, or not JSON at all: a result
    from an in-engine function can hold any Python value)."""
    if not isinstance(result, dict):
        return FullResponse(200, list(JSON), b"{}")
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
        return FullResponse(status, headers, body.encode())
    if content_type is None:
        headers.append(JSON[0])
    try:
        encoded = orjson.dumps(body)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        message = f"the function's result cannot be written as JSON: {exc}"
        raise HttpError(500, "invalid_payload", message) from None
    return FullResponse(status, headers, encoded)


def _text(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return ""


def _name_server_span(method: str, match: Match) -> None:
    """Name the request's span after its route, not its path (bounded cardinality)."""
    span = tracing.current_span.get()
    if span is not None and span.kind == "server":
        route = "/" + match.binding.config["api_path"].lstrip("/")
        span.name = f"{method} {route}"
        span.attributes["http.route"] = route
