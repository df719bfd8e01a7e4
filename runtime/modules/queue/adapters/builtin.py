"""The builtin adapter (``modules::queue::BuiltinQueueAdapter``): jobs in this engine's
memory, written through to SQLite with ``store_method: file_based`` (see :mod:`.job_store`).

Fan-out uses this engine's bindings; messages enqueued on a topic nobody is bound to are
held (the backlog) and fanned out when the first binding appears. A failed job of a
concurrent stream goes back into its stream's line, ready after the backoff.

Caps (``max_jobs``, ``max_backlog_per_topic``, ``max_dlq_per_queue`` in the config): an
enqueue is checked against them and its room reserved before its first await (the SQLite
write), so enqueues started at once can never all pass a check that only one of them
fits; what is being stored counts until it is in a stream or a backlog. Held messages count
towards ``max_jobs`` too (one each; released to N functions they become N jobs). A DLQ
beyond its cap drops its oldest dead letters (:mod:`.dlq_cap`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import trio

from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.modules.queue.adapters.dlq_cap import DeadLetterDrops
from iii_trio.runtime.modules.queue.adapters.job_store import JobStore
from iii_trio.runtime.modules.queue.config import BuiltinQueueConfig
from iii_trio.runtime.modules.queue.jobs import Job, Trace
from iii_trio.runtime.modules.queue.streams import Stream

if TYPE_CHECKING:
    from iii_trio.runtime.modules.queue.adapters import QueueHost


#: A message held for a topic's first subscriber: (message id, data, its enqueuer's trace).
Held = tuple[str, Any, Trace]


class BuiltinAdapter:
    name = "builtin"

    def __init__(self, config: BuiltinQueueConfig, host: QueueHost) -> None:
        self.config = config
        self.host = host
        self.backlog: dict[str, list[Held]] = {}
        self._held = 0  # messages in all backlogs
        self.dlq: dict[str, list[Job]] = {}
        self.dlq_drops = DeadLetterDrops(config.max_dlq_per_queue)
        self.store: JobStore | None = None
        self._nursery: trio.Nursery | None = None
        # Room taken by enqueues (and backlog releases) between their check and the moment
        # their jobs are in a stream or their message in a backlog, where they count anyway.
        self._reserved = 0
        self._holding: dict[str, int] = {}  # per topic: messages being stored for its backlog

    def introspect(self) -> dict[str, Any]:
        return {
            "store": self.config.store_method,
            "backlog": {topic: len(held) for topic, held in self.backlog.items()},
            "dlq": {queue: len(jobs) for queue, jobs in self.dlq.items()},
            "dlq_dropped": dict(self.dlq_drops.counts),
        }

    def stream_info(self, stream: Stream) -> dict[str, Any]:
        return {}

    @asynccontextmanager
    async def open(self) -> AsyncIterator[None]:
        method = self.config.store_method
        self.store = await JobStore.open(self.config.file_path if method == "file_based" else None)
        try:
            jobs, backlog = await self.store.load()
            for job in jobs:  # jobs being delivered at a crash are simply waiting again
                if job.error is not None:
                    self.dlq.setdefault(job.queue, []).append(job)
                else:
                    stream = self.host.stream_for(job.queue, job.function_id)
                    stream.push(job, 0.0, self.host.next_order())
            dropped = [job for queue in list(self.dlq) for job in self._trim_dlq(queue)]
            if dropped:  # a lowered cap
                await self.store.delete(*dropped)
            for topic, message_id, data, trace in backlog:
                self.backlog.setdefault(topic, []).append((message_id, data, trace))
                self._held += 1
            yield
        finally:
            with trio.CancelScope(shield=True):
                await self.store.aclose()

    def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        for (queue, _), stream in self.host.streams.items():
            if queue in self.host.named:
                self.host.start_consumer(stream)

    # --- subscriptions and streams -----------------------------------------------------------

    def subscribed(self, topic: str, function_id: str) -> None:
        if self._nursery is None or not self.backlog.get(topic):
            return  # (the module binds only once it runs: kept for the first binding then)
        held = self.backlog.pop(topic)
        self._held -= len(held)
        self._reserved += len(held)  # still counted while they become jobs
        self._nursery.start_soon(self._release_backlog, topic, held)

    def unsubscribed(self, topic: str, function_id: str) -> None:
        pass

    async def _release_backlog(self, topic: str, held: list[Held]) -> None:
        try:
            await self._release(topic, held)
        finally:
            self._reserved -= len(held)

    async def _release(self, topic: str, held: list[Held]) -> None:
        """Held messages become jobs of the functions bound to ``topic`` now, stored in one
        commit."""
        jobs = [job for message in held for job in self._jobs_for(topic, *message)]
        assert self.store is not None
        await self.store.release_backlog([message_id for message_id, _, _ in held], jobs)
        self._queue_jobs(jobs)

    def make_stream(self, queue: str, function_id: str, concurrency: int, fifo: bool) -> Stream:
        return Stream(queue, function_id, concurrency=concurrency, fifo=fifo)

    def stream_tasks(self, stream: Stream, nursery: trio.Nursery) -> None:
        pass  # the consumer takes jobs from the stream's line, where this adapter puts them

    async def consumer_stopped(self, stream: Stream) -> None:
        pass  # its jobs stay in the line until the function is bound again

    # --- delivery outcomes -------------------------------------------------------------------

    async def succeeded(self, stream: Stream, job: Job) -> None:
        assert self.store is not None
        await self.store.delete(job)
        stream.forget(job)

    async def dead_lettered(self, stream: Stream, job: Job) -> None:
        assert self.store is not None
        stream.forget(job)
        self.dlq.setdefault(job.queue, []).append(job)
        dropped = self._trim_dlq(job.queue)  # before the await: the cap holds at every moment
        await self.store.save(job, dropping=dropped)

    def _trim_dlq(self, queue: str) -> list[Job]:
        """Drop the queue's oldest dead letters beyond the cap; those dropped."""
        dead = self.dlq[queue]
        excess = len(dead) - self.config.max_dlq_per_queue
        if excess <= 0:
            return []
        dropped = dead[:excess]
        del dead[:excess]
        self.dlq_drops.dropped(queue, excess)
        return dropped

    async def retry_later(self, stream: Stream, job: Job, delay: float) -> None:
        assert self.store is not None
        await self.store.save(job)
        stream.push(job, trio.current_time() + delay, 0)

    async def failed_in_place(self, stream: Stream, job: Job) -> None:
        assert self.store is not None
        await self.store.save(job)

    def abandoned(self, stream: Stream, job: Job) -> None:
        stream.push(job, trio.current_time(), 0)  # waits again, in its old place

    # --- enqueueing --------------------------------------------------------------------------

    def _jobs_for(self, topic: str, message_id: str, data: Any, trace: Trace) -> list[Job]:
        return [
            self.host.new_job(topic, function_id, message_id, data, trace)
            for function_id in self.host.functions_of(topic)
        ]

    def _queue_jobs(self, jobs: list[Job]) -> None:
        for job in jobs:
            stream = self.host.stream_for(job.queue, job.function_id)
            stream.push(job, trio.current_time(), self.host.next_order())
            if job.queue in self.host.named:
                self.host.start_consumer(stream)

    def _in_use(self) -> int:
        """Jobs waiting or in flight, messages held, and the room reserved for both."""
        jobs = sum(s.waiting + s.in_flight for s in self.host.streams.values())
        return jobs + self._held + self._reserved

    @contextmanager
    def _room(self, count: int, *, held_for: str | None = None) -> Iterator[None]:
        """Check the caps for ``count`` jobs (or, with ``held_for``, one message held for
        that topic) and reserve the room for the block, where they are stored. Synchronous
        up to the ``yield``: the check and the reservation are one step."""
        limit = self.config.max_jobs
        if self._in_use() + count > limit:
            raise InvocationError("queue_full", f"more than {limit} jobs are waiting")
        if held_for is not None:
            backlog_limit = self.config.max_backlog_per_topic
            holding = self._holding.get(held_for, 0)
            if len(self.backlog.get(held_for, ())) + holding >= backlog_limit:
                raise InvocationError(
                    "queue_full", f"{backlog_limit} messages wait for a subscriber"
                )
            self._holding[held_for] = holding + 1
        self._reserved += count
        try:
            yield
        finally:
            self._reserved -= count
            if held_for is not None:
                left = self._holding[held_for] - 1
                if left:
                    self._holding[held_for] = left
                else:
                    del self._holding[held_for]

    async def enqueue_topic(self, topic: str, message_id: str, data: Any, trace: Trace) -> None:
        store = self.store
        assert store is not None
        jobs = self._jobs_for(topic, message_id, data, trace)
        if jobs:
            with self._room(len(jobs)):
                await store.save(*jobs)  # committed before the caller hears back
                self._queue_jobs(jobs)
            return
        # Nobody subscribed yet: held until the first subscription.
        with self._room(1, held_for=topic):
            await store.hold(topic, message_id, data, trace)
            if self.host.functions_of(topic):  # a subscription came while it was stored
                await self._release(topic, [(message_id, data, trace)])
            else:
                self.backlog.setdefault(topic, []).append((message_id, data, trace))
                self._held += 1

    async def enqueue_job(self, job: Job) -> None:
        assert self.store is not None
        with self._room(1):
            await self.store.save(job)
            self._queue_jobs([job])

    # --- dead letters ------------------------------------------------------------------------

    async def redrive(self, queue: str, message_id: str | None) -> int:
        dead = self.dlq.get(queue, [])
        chosen = [job for job in dead if message_id is None or job.message_id == message_id]
        if not chosen:
            return 0
        moved = {job.id for job in chosen}
        self.dlq[queue] = [job for job in dead if job.id not in moved]
        for job in chosen:
            job.attempts_made, job.error, job.failed_at = 0, None, None
        assert self.store is not None
        await self.store.save(*chosen)
        self._queue_jobs(chosen)
        return len(chosen)

    async def dead_letters(self, queue: str) -> list[Job]:
        return list(self.dlq.get(queue, ()))
