"""Where a QueueModule's jobs live: the adapter its config names, as one object the module
talks to (:class:`QueueAdapter`), made by :func:`create`.

- :mod:`.builtin`: ``BuiltinQueueAdapter``, jobs in this engine's memory, written through
  to SQLite with ``file_based`` (:mod:`.job_store`);
- :mod:`.redis`: ``RedisAdapter``, jobs in Redis streams shared by every engine on that
  Redis, at least once (its layout in :mod:`.redis_layout`, its topic subscriptions in
  :mod:`.redis_subscriptions`).

The module owns what both share (the trigger, the functions' inputs, the streams, the
consumers and the retry arithmetic) and calls its adapter at each step where jobs are
stored: an enqueue, and the outcome of each delivery. The adapter reaches back to the module
only through :class:`QueueHost`.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import trio

from iii_trio.runtime.modules.queue.config import (
    BuiltinQueueConfig,
    NamedQueueConfig,
    RedisQueueConfig,
)
from iii_trio.runtime.modules.queue.jobs import Job, Trace
from iii_trio.runtime.modules.queue.streams import Stream


class QueueHost(Protocol):
    """What an adapter uses of its QueueModule."""

    @property
    def name(self) -> str:
        """The module's name (logs, connection names)."""
        ...

    @property
    def named(self) -> Mapping[str, NamedQueueConfig]:
        """The named queues of ``queue_configs``."""
        ...

    @property
    def streams(self) -> Mapping[tuple[str, str], Stream]:
        """Every (queue, function) stream made so far."""
        ...

    def stream_for(self, queue: str, function_id: str) -> Stream:
        """The stream of (queue, function), made (by :meth:`QueueAdapter.make_stream`) on
        first use."""
        ...

    def start_consumer(self, stream: Stream) -> None:
        """Deliver the stream's jobs (no-op while one consumes it or the module is not
        running)."""
        ...

    def stop_consumer(self, stream: Stream) -> None: ...

    def functions_of(self, topic: str) -> list[str]:
        """The distinct functions bound to ``topic`` here."""
        ...

    def has_function(self, function_id: str) -> bool:
        """Whether ``function_id`` is registered with this engine."""
        ...

    def new_job(
        self, queue: str, function_id: str, message_id: str, data: Any, trace: Trace = ...
    ) -> Job:
        """A job with the stream's settings (attempts, backoff, FIFO group), continuing
        ``trace`` (its enqueuer's)."""
        ...

    def next_order(self) -> int:
        """The next enqueue order (a stream's line keeps jobs in it)."""
        ...

    def lease_ms(self) -> int:
        """How long one delivery may take."""
        ...

    def poll_interval(self, queue: str) -> float:
        """Seconds between polls of an idle queue."""
        ...


class QueueAdapter(Protocol):
    @property
    def name(self) -> str:
        """What introspection shows as the module's ``adapter``."""
        ...

    # --- running ---------------------------------------------------------------------------

    def open(self) -> AbstractAsyncContextManager[None]:
        """What must outlive the consumers (a store, a connection): open before the first
        consumer starts, closed after the last one stopped (even when cancelled)."""
        ...

    def start(self, nursery: trio.Nursery) -> None:
        """Start what runs next to the consumers (in their nursery, just opened)."""
        ...

    def introspect(self) -> dict[str, Any]:
        """The adapter's rows of the module's introspection (``dlq``: size per queue)."""
        ...

    def stream_info(self, stream: Stream) -> dict[str, Any]:
        """The adapter's fields of one stream's introspection."""
        ...

    # --- subscriptions and streams ---------------------------------------------------------

    def subscribed(self, topic: str, function_id: str) -> None:
        """``function_id`` was bound to ``topic`` (its stream's consumer started)."""
        ...

    def unsubscribed(self, topic: str, function_id: str) -> None:
        """The last binding of ``function_id`` to ``topic`` went (its consumer stopped)."""
        ...

    def make_stream(self, queue: str, function_id: str, concurrency: int, fifo: bool) -> Stream: ...

    def stream_tasks(self, stream: Stream, nursery: trio.Nursery) -> None:
        """Start the tasks that run next to a stream's consumer (and stop with it)."""
        ...

    async def consumer_stopped(self, stream: Stream) -> None:
        """The consumer of ``stream`` ended (shielded)."""

    # --- delivery outcomes -----------------------------------------------------------------

    async def succeeded(self, stream: Stream, job: Job) -> None:
        """Handled: never deliver it again (shielded)."""

    async def dead_lettered(self, stream: Stream, job: Job) -> None:
        """``job.error`` and ``job.failed_at`` are set."""

    async def retry_later(self, stream: Stream, job: Job, delay: float) -> None:
        """A concurrent stream's job failed; deliver it again in ``delay`` seconds."""

    async def failed_in_place(self, stream: Stream, job: Job) -> None:
        """A FIFO job failed and will be retried in place: keep its attempt count."""

    def abandoned(self, stream: Stream, job: Job) -> None:
        """The delivery of ``job`` was cut off (its consumer stopped)."""
        ...

    # --- enqueueing and dead letters -------------------------------------------------------

    async def enqueue_topic(self, topic: str, message_id: str, data: Any, trace: Trace) -> None:
        """One job per function bound to ``topic`` (held while there is none), each carrying
        ``trace``."""

    async def enqueue_job(self, job: Job) -> None:
        """Store a named queue's job (raise ``InvocationError`` when it cannot be)."""

    async def redrive(self, queue: str, message_id: str | None) -> int:
        """Move the queue's dead letters (those of one message) back; how many moved."""
        ...

    async def dead_letters(self, queue: str) -> list[Job]: ...


def create(config: BuiltinQueueConfig | RedisQueueConfig, host: QueueHost) -> QueueAdapter:
    """The adapter of ``config`` (one this build has: the catalog checked it)."""
    if isinstance(config, RedisQueueConfig):
        from iii_trio.runtime.modules.queue.adapters.redis import RedisAdapter

        return RedisAdapter(config, host)
    from iii_trio.runtime.modules.queue.adapters.builtin import BuiltinAdapter

    return BuiltinAdapter(config, host)
