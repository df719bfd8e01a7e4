"""The builtin adapter (``modules::queue::BuiltinQueueAdapter``): jobs in this engine's
memory, written through to SQLite with ``store_method: file_based`` (see :mod:`.job_store`).

Fan-out uses this engine's bindings; messages enqueued on a topic nobody is bound to are
held (the backlog) and fanned out when the first binding appears. A failed job of a
concurrent stream goes back into its stream's line, ready after the backoff.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.modules.queue.adapters.job_store import JobStore
from iii_trio.runtime.modules.queue.config import BuiltinQueueConfig
from iii_trio.runtime.modules.queue.jobs import Job
from iii_trio.runtime.modules.queue.streams import Stream

if TYPE_CHECKING:
    from iii_trio.runtime.modules.queue.adapters import QueueHost

# Jobs waiting or in flight across all streams, and messages held per topic without a
# subscriber: beyond these an enqueue is refused with `queue_full` rather than growing.
MAX_JOBS = 100_000
MAX_BACKLOG_PER_TOPIC = 10_000


class BuiltinAdapter:
    name = "builtin"

    def __init__(self, config: BuiltinQueueConfig, host: QueueHost) -> None:
        self.config = config
        self.host = host
        self.backlog: dict[str, list[tuple[str, Any]]] = {}
        self.dlq: dict[str, list[Job]] = {}
        self.store: JobStore | None = None
        self._nursery: trio.Nursery | None = None

    def introspect(self) -> dict[str, Any]:
        return {
            "store": self.config.store_method,
            "backlog": {topic: len(held) for topic, held in self.backlog.items()},
            "dlq": {queue: len(jobs) for queue, jobs in self.dlq.items()},
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
            for topic, message_id, data in backlog:
                self.backlog.setdefault(topic, []).append((message_id, data))
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
        held = self.backlog.pop(topic, None)
        if held and self._nursery is not None:
            self._nursery.start_soon(self._release_backlog, topic, held)

    def unsubscribed(self, topic: str, function_id: str) -> None:
        pass

    async def _release_backlog(self, topic: str, held: list[tuple[str, Any]]) -> None:
        jobs = [job for message_id, data in held for job in self._jobs_for(topic, message_id, data)]
        assert self.store is not None
        await self.store.release_backlog(topic, jobs)
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
        await self.store.save(job)

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

    def _jobs_for(self, topic: str, message_id: str, data: Any) -> list[Job]:
        return [
            self.host.new_job(topic, function_id, message_id, data)
            for function_id in self.host.functions_of(topic)
        ]

    def _queue_jobs(self, jobs: list[Job]) -> None:
        for job in jobs:
            stream = self.host.stream_for(job.queue, job.function_id)
            stream.push(job, trio.current_time(), self.host.next_order())
            if job.queue in self.host.named:
                self.host.start_consumer(stream)

    def _check_room(self, extra: int) -> None:
        waiting = sum(s.waiting + s.in_flight for s in self.host.streams.values())
        if waiting + extra > MAX_JOBS:
            raise InvocationError("queue_full", f"more than {MAX_JOBS} jobs are waiting")

    async def enqueue_topic(self, topic: str, message_id: str, data: Any) -> None:
        store = self.store
        assert store is not None
        jobs = self._jobs_for(topic, message_id, data)
        if not jobs:  # nobody subscribed yet: held until the first subscription
            held = self.backlog.setdefault(topic, [])
            if len(held) >= MAX_BACKLOG_PER_TOPIC:
                raise InvocationError(
                    "queue_full", f"{MAX_BACKLOG_PER_TOPIC} messages wait for a subscriber"
                )
            await store.hold(topic, message_id, data)
            held.append((message_id, data))
            return
        self._check_room(len(jobs))
        await store.save(*jobs)  # committed before the caller hears back
        self._queue_jobs(jobs)

    async def enqueue_job(self, job: Job) -> None:
        self._check_room(1)
        assert self.store is not None
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
