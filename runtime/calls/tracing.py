"""Engine spans and W3C trace context, the seam between the engine and observability.

The engine and its modules open spans through :func:`span` and the router reports each
invocation to ``router.observer``. Both do nothing when no observer is installed (the
observability module is absent or disabled): the cost is one attribute check.

The span that encloses the running code is kept in :data:`current_span`, so a call routed
from inside it (an HTTP request calling its function, an engine function calling another)
becomes its child. Trio copies context variables into the tasks a task spawns, so the
invocation actors of those calls see it too.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

import attrs

if TYPE_CHECKING:
    from iii_trio.runtime.calls.invocation import Invocation
    from iii_trio.runtime.calls.peer import Peer
    from iii_trio.runtime.wire.protocol import Telemetry


@attrs.define(slots=True, eq=False)
class Span:
    """One span; ids are lower-case hex as in OTLP JSON (32 and 16 digits)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str  # internal | server | client | producer | consumer
    start_ns: int
    sampled: bool
    attributes: dict[str, Any]
    end_ns: int = 0
    status: str = "unset"  # unset | ok | error
    status_message: str | None = None
    service_name: str | None = None  # None: the engine's own service name
    events: list[dict[str, Any]] | None = None

    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def fail(self, message: str) -> None:
        self.status = "error"
        self.status_message = message


def parse_traceparent(value: Any) -> tuple[str, str, bool] | None:
    """``00-<trace id>-<parent span id>-<flags>`` -> (trace id, span id, sampled); None when
    malformed or all-zero (W3C: such a header is ignored and a new trace starts)."""
    if not isinstance(value, str) or len(value) < 55:
        return None
    parts = value.strip().lower().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    try:
        if int(parts[1], 16) == 0 or int(parts[2], 16) == 0:
            return None
        flags = int(parts[3], 16)
    except ValueError:
        return None
    if parts[0] == "ff":
        return None
    return parts[1], parts[2], bool(flags & 1)


_random = random.Random()


def new_trace_id() -> str:
    return f"{_random.getrandbits(128) or 1:032x}"


def new_span_id() -> str:
    return f"{_random.getrandbits(64) or 1:016x}"


current_span: ContextVar[Span | None] = ContextVar("iii_trio_current_span", default=None)


class Observer(Protocol):
    """What the engine reports to the observability module (installed as ``router.observer``)."""

    def start_span(
        self,
        name: str,
        *,
        kind: str,
        attributes: dict[str, Any],
        traceparent: str | None = None,
    ) -> Span: ...

    def end_span(self, span: Span) -> None: ...

    def invocation_started(self, invocation: Invocation) -> None: ...

    def invocation_finished(self, invocation: Invocation) -> None: ...

    def worker_event(self, event: str) -> None: ...

    def call_deferred(self) -> None: ...

    def telemetry(self, conn: Peer | None, frame: Telemetry) -> None: ...


@contextmanager
def span(
    observer: Observer | None,
    name: str,
    *,
    kind: str = "internal",
    attributes: dict[str, Any] | None = None,
    traceparent: str | None = None,
) -> Iterator[Span | None]:
    """A span around the block, the current span inside it; None without an observer.
    An exception leaving the block marks the span as failed (a cancellation too)."""
    if observer is None:
        yield None
        return
    opened = observer.start_span(
        name, kind=kind, attributes=attributes or {}, traceparent=traceparent
    )
    token = current_span.set(opened)
    try:
        yield opened
    except BaseException as exc:
        if opened.status != "error":
            opened.fail(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        raise
    finally:
        current_span.reset(token)
        observer.end_span(opened)
