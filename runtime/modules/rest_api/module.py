"""RestApiModule (``modules::api::RestApiModule``, ``iii-http``; spec/modules.md §3, D5, D6).

HTTP/1.1 on h11 (one task per connection, keep-alive, a header-read deadline, TCP_NODELAY).
The request's ``default_timeout`` starts once its head is in, so a body that trickles in
counts against it too (408 when it is not complete in time).
Each request is matched in the route table, admitted (at most ``concurrency_request_limit``
execute, as many more wait in FIFO order, beyond that 503), then its condition and function
are called through the router. From its arrival the request is listed by
``engine::invocations::list``: queued while it waits, then as its function's invocation under
the same id, deadline arrival + ``default_timeout``. Every answer, errors included, carries
the CORS headers. How one
request's body and answer flow, streamed ones included, is in :mod:`.exchange`.

A request's body is read only once it is admitted (it waits for its slot with its head
alone), always against ``body_limit``, so at most ``concurrency_request_limit`` bodies are in
memory at once (``body_bytes_held`` in ``engine::modules::list``).

Failures are contained where they happen: an exception while serving one exchange ends
that exchange (answered 500 ``internal_error`` if its response has not started) and its
connection; one while serving a connection ends that connection. Neither reaches the
listener, so the module keeps serving every other client and is never restarted for one
request (``failures_contained`` counts them).

Shutdown drains: the listener closes, idle keep-alive connections close, and requests in
flight finish (answered with ``connection: close``) within the engine's drain timeout.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import h11
import orjson
import trio

from iii_trio.runtime.calls import inputs
from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.calls.router import not_found
from iii_trio.runtime.connections.access import ExposedPort
from iii_trio.runtime.connections.admission import peer_address
from iii_trio.runtime.modules.base import EngineModule
from iii_trio.runtime.modules.rest_api.config import CorsConfig, RestApiConfig
from iii_trio.runtime.modules.rest_api.exchange import CALLER, Exchange
from iii_trio.runtime.modules.rest_api.http_io import HttpConnection, HttpError
from iii_trio.runtime.modules.rest_api.routes import ROUTED_METHODS, RouteTable

if TYPE_CHECKING:
    from iii_trio.runtime.calls.invocation import Invocation, QueuedCall
    from iii_trio.runtime.calls.registry import Binding, EngineTriggerType
    from iii_trio.runtime.config.loading import ModuleEntry
    from iii_trio.runtime.modules.context import ModuleContext

log = logging.getLogger("iii_trio.http")

HEADER_DEADLINE_SECONDS = 10.0  # a client must send its request head within this
RETRY_AFTER_SECONDS = 1
METHOD_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110 §5.6.2)


@attrs.define
class BodyBytes:
    """Bytes of request bodies the module holds in memory now (read whole, for JSON), and
    the most it ever held at once: admission bounds them to ``concurrency_request_limit``
    bodies of at most ``body_limit`` each."""

    held: int = 0
    peak: int = 0

    def hold(self, size: int) -> None:
        self.held += size
        self.peak = max(self.peak, self.held)

    def release(self, size: int) -> None:
        self.held -= size


def create(ctx: ModuleContext, entry: ModuleEntry) -> RestApiModule:
    assert isinstance(entry.config, RestApiConfig)
    return RestApiModule(ctx, entry.config)


@attrs.frozen(kw_only=True)
class HttpTriggerConfig:
    """An ``http`` binding: ``{api_path, http_method?}`` (an empty method is ``GET``); its
    ``condition_function_id`` is read when a request comes."""

    RULES: ClassVar[inputs.Rules] = inputs.Rules(accepts="anything")
    api_path: str = inputs.field(
        missing="api_path is required for http triggers",
        wrong="api_path is required for http triggers",
    )
    http_method: str = inputs.field(
        default="GET", wrong="http_method must be a string", blank_is_missing=True
    )


class HttpTrigger:
    """The ``http`` trigger type: ``{api_path, http_method?, condition_function_id?}``."""

    id = "http"
    description = "Serves an HTTP route on the API port"

    def __init__(self) -> None:
        self.routes = RouteTable()

    def bind(self, binding: Binding) -> None:
        config = inputs.structure_config(binding.config, HttpTriggerConfig)
        method = config.http_method.upper()
        if method not in ROUTED_METHODS:
            log.warning("http trigger %s: method %s is stored but never routed", binding.id, method)
        self.routes.add(method, config.api_path, binding)

    def unbind(self, binding: Binding) -> None:
        config = binding.config
        method = str(config.get("http_method") or "GET").upper()
        self.routes.remove(method, config["api_path"], binding)


class Cors:
    def __init__(self, config: CorsConfig | None) -> None:
        self.origins = list(config.allowed_origins or []) if config else []
        self.headers = list(config.allowed_headers or []) if config else []
        listed = [m.upper() for m in (config.allowed_methods or [])] if config else []
        # None: any method. A list of only invalid names allows none rather than any.
        self.methods: list[str] | None = None
        if listed and "*" not in listed:
            self.methods = [m for m in listed if METHOD_NAME.fullmatch(m)]
            for dropped in sorted(set(listed) - set(self.methods)):
                log.warning("cors.allowed_methods: %r is not an HTTP method name; dropped", dropped)

    def response_headers(self, origin: str | None) -> list[tuple[str, str]]:
        if not self.origins or "*" in self.origins:
            return [("access-control-allow-origin", "*"), ("access-control-expose-headers", "*")]
        if origin is not None and origin in self.origins:
            return [("access-control-allow-origin", origin), ("vary", "Origin")]
        return [("vary", "Origin")]

    def preflight(self, origin: str | None, requested_headers: str | None) -> list[tuple[str, str]]:
        if not self.headers or "*" in self.headers:
            allowed = requested_headers or "*"
        else:
            allowed = ", ".join(self.headers)
        headers = [*self.response_headers(origin), ("access-control-allow-headers", allowed)]
        if self.methods is None:
            headers.append(("access-control-allow-methods", "*"))
        elif self.methods:
            headers.append(("access-control-allow-methods", ", ".join(self.methods)))
        return headers


class RestApiModule(EngineModule):
    def __init__(self, ctx: ModuleContext, config: RestApiConfig) -> None:
        super().__init__(ctx)
        self.config = config
        self.trigger = HttpTrigger()
        self.cors = Cors(config.cors)
        self.port: int | None = None
        self._executing = trio.Semaphore(config.concurrency_request_limit)
        self._waiting = 0
        self._accepting: trio.CancelScope | None = None
        self._connections: set[HttpConnection] = set()
        # The port's caps and the engine's descriptor reserve (routes stay public: no
        # protected mode here, see runtime/connections/admission.py).
        self.gate = ctx.port_gate(
            "http port", config.max_connections, config.max_connections_per_address
        )
        self._in_flight = 0
        self._all_answered = trio.Event()
        self.draining = False
        self.bodies = BodyBytes()
        self.failures_contained = 0

    def trigger_types(self) -> list[EngineTriggerType]:
        return [self.trigger]

    def introspect(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "routes": self.trigger.routes.count,
            "in_flight": self._in_flight,
            "waiting": self._waiting,
            "body_bytes_held": self.bodies.held,
            "body_bytes_peak": self.bodies.peak,
            "failures_contained": self.failures_contained,
            **self.gate.statistics(),
        }

    async def serve(self, task_status: trio.TaskStatus[Any]) -> None:
        listeners = await trio.open_tcp_listeners(self.config.port, host=self.config.host)
        self.port = listeners[0].socket.getsockname()[1]
        log.info("HTTP API listening on http://%s:%s", self.config.host, self.port)
        access = self.ctx.access.describe_endpoints()
        exposed = ExposedPort("http port", self.config.host, self.port, f"HTTP routes; {access}")
        async with trio.open_nursery() as connections:
            with trio.CancelScope() as self._accepting, self.ctx.exposing(exposed):
                task_status.started()
                await trio.serve_listeners(self._admit, listeners, handler_nursery=connections)
            await trio.sleep_forever()  # drained: live connections finish, then shutdown cancels

    async def drain(self) -> None:
        """Stop accepting, close idle connections and wait for the requests in flight."""
        self.draining = True
        if self._accepting is not None:
            self._accepting.cancel()
        for conn in self._connections:
            conn.close_when_idle()
        if self._in_flight:
            await self._all_answered.wait()

    # --- one connection ------------------------------------------------------------------------

    async def _admit(self, stream: trio.SocketStream) -> None:
        """Admit a socket through the port's gate before reading from it: past
        ``max_connections`` or the descriptor reserve it is answered 503 and closed. The
        listener's handler: nothing but cancellation leaves it (see :meth:`_connection`)."""
        try:
            address = peer_address(stream)[0]
            rejection = self.gate.screen(stream, address)
            if rejection is not None:
                await self.gate.refuse(stream, rejection)
                return
        except Exception as exc:
            self.failures_contained += 1
            log.error("http: failed admitting a connection", exc_info=exc)
            await stream.aclose()
            return
        with self.gate.admitted(address):
            await self._connection(stream)

    async def _connection(self, stream: trio.SocketStream) -> None:
        """Serve one socket. Nothing but cancellation leaves: a failure here ends this
        connection only (:meth:`_contain`), never the listener and so never the module."""
        try:
            conn = HttpConnection(stream)
        except OSError:  # the client already left (setsockopt on a dead socket)
            await stream.aclose()
            return
        self._connections.add(conn)
        try:
            await self._requests(conn)
        except Exception as exc:
            await self._contain(conn, exc, "connection")
        finally:
            self._connections.discard(conn)
            await conn.close()

    async def _requests(self, conn: HttpConnection) -> None:
        """The connection's requests in turn, while it stays reusable."""
        try:
            while not conn.closing:
                head = await conn.read_head(HEADER_DEADLINE_SECONDS)
                if head is None:
                    break
                await self._exchange(conn, head)
                if not conn.reusable:
                    break
                conn.h11.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            await self._refuse(conn, exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass

    async def _refuse(self, conn: HttpConnection, exc: h11.RemoteProtocolError) -> None:
        """A request h11 cannot parse (or :func:`check_framing` refuses) gets its status
        hint (400, 431, 505...) in the error envelope, then the connection closes; nothing
        was routed."""
        if conn.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return  # a response is already under way: closing is all that is left
        envelope = {"error": {"code": "bad_request", "message": f"malformed request: {exc}"}}
        headers = [*self.cors.response_headers(None), ("content-type", "application/json")]
        try:  # the request is unread (or their side in ERROR): the answer says connection: close
            await conn.send_full(exc.error_status_hint, headers, orjson.dumps(envelope))
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass

    async def _exchange(self, conn: HttpConnection, head: h11.Request) -> None:
        self._in_flight += 1
        try:
            exchange = Exchange(self, conn, head)
            if self.ctx.observer is None:
                await exchange.run()
            else:
                await exchange.run_traced()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            raise  # the client left or broke HTTP: :meth:`_requests` answers what it can
        except Exception as exc:
            await self._contain(conn, exc, f"{head.method.decode()} {head.target!r}")
        finally:
            self._in_flight -= 1
            if self.draining and not self._in_flight:
                self._all_answered.set()

    async def _contain(self, conn: HttpConnection, exc: Exception, what: str) -> None:
        """A bug met while serving ``what``: log it, count it and answer 500 when no response
        has started yet; the caller then ends only this exchange and its connection."""
        self.failures_contained += 1
        conn.closing = True  # whatever state the failure left behind, the connection ends
        error_id = secrets.token_hex(8)
        log.error("http %s: failed (%s)", what, error_id, exc_info=exc)
        if conn.h11.our_state is not h11.SEND_RESPONSE:
            return  # nothing asked, or the answer is already under way: closing is all
        message = f"the engine failed while serving this request (error_id {error_id})"
        envelope = {"error": {"code": "internal_error", "message": message, "error_id": error_id}}
        headers = [*self.cors.response_headers(None), ("content-type", "application/json")]
        try:  # conn.closing: the answer says connection: close
            await conn.send_full(500, headers, orjson.dumps(envelope))
        except Exception as again:  # best effort: the failure is logged, the connection ends
            log.debug("http %s: the 500 could not be sent either: %r", what, again)

    # --- admission and the call ----------------------------------------------------------------

    async def admit(self) -> None:
        """One of the N execution slots, in arrival order; 503 when N more already wait."""
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

    def release(self) -> None:
        self._executing.release()

    async def start_route(
        self, binding: Binding, data: dict[str, Any], queued: QueuedCall, deadline: float
    ) -> Invocation:
        """The route's condition (awaited), then its function's invocation, started under
        the id, start and deadline the request was listed with while queued."""
        condition = (binding.config or {}).get("condition_function_id")
        try:
            if condition:
                left_ms = max(1, int((deadline - trio.current_time()) * 1000))
                met = await self.ctx.call(condition, data, caller=CALLER, timeout_ms=left_ms)
                if met is False:
                    raise HttpError(422, "condition_not_met", "the request condition was not met")
        except InvocationError as exc:
            raise _http_error(exc) from None
        invocation = self.ctx.start(
            binding.function_id,
            data,
            caller=CALLER,
            invocation_id=queued.id,
            timeout_ms=queued.timeout_ms,
            deadline=deadline,
            started_at_ms=queued.started_at_ms,
        )
        if invocation is None:
            raise HttpError(500, "function_not_found", not_found(binding.function_id).message)
        return invocation

    async def result_of(self, invocation: Invocation) -> Any:
        try:
            return await self.ctx.result(invocation)
        except InvocationError as exc:
            raise _http_error(exc) from None


def _http_error(exc: InvocationError) -> HttpError:
    if exc.code == "timeout":
        return HttpError(504, "timeout", exc.message)
    return HttpError(500, exc.code, exc.message)
