"""A queue's unit of work (spec/modules.md §6.5): one message for one function, with its
delivery count and its enqueuer's trace context; both adapters keep jobs (the builtin one
in :mod:`.adapters.job_store`, the Redis one in Redis streams)."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class Trace:
    """The W3C trace context an enqueue ran in (``traceparent``, ``baggage``): each delivery
    of its jobs continues it, so the consumer span is a child of the enqueuer's."""

    traceparent: str | None = None
    baggage: str | None = None


NO_TRACE = Trace()


@attrs.define(eq=False)
class Job:
    id: str
    queue: str  # the topic or the named queue
    function_id: str
    message_id: str
    data: Any
    max_attempts: int
    backoff_delay_ms: int
    created_at: int  # unix ms
    attempts_made: int = 0
    group_id: str | None = None
    error: str | None = None  # set once dead-lettered
    failed_at: int | None = None
    traceparent: str | None = None  # the enqueuer's trace context (:class:`Trace`)
    baggage: str | None = None

    @property
    def trace(self) -> Trace:
        return Trace(self.traceparent, self.baggage)

    def record(self) -> dict[str, Any]:
        """The job as the spec's DLQ entries show it."""
        return {
            "id": self.id,
            "queue": self.queue,
            "data": self.data,
            "attempts_made": self.attempts_made,
            "max_attempts": self.max_attempts,
            "backoff_delay_ms": self.backoff_delay_ms,
            "created_at": self.created_at,
            "group_id": self.group_id,
            "function_id": self.function_id,
            "message_id": self.message_id,
        }
