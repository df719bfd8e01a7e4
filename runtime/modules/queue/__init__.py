"""QueueModule with the builtin adapter (``modules::queue::QueueModule``; spec §6, D8).

Topic queues: ``enqueue {topic, data}`` makes one job per distinct function bound to the
topic with a ``queue`` trigger (held as backlog while nobody is bound). Named queues (from
``queue_configs``) take jobs through the invoke action ``{type: "enqueue", queue}``. Each
(queue, function) pair is a :class:`Stream` with one consumer task that delivers up to
``concurrency`` jobs at once, each delivery an invocation whose deadline is the lease.
A failed delivery waits ``backoff_ms * 2^(n-1)`` and goes back to the front of its stream;
after ``max_attempts`` deliveries the job moves to the dead-letter queue (DLQ), from which
``iii::queue::redrive`` / ``iii::queue::redrive_message`` bring it back. FIFO streams
deliver one job at a time and retry it in place. Jobs are written through to SQLite with
``store_method: file_based`` (see :mod:`.jobs`).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import trio

from iii_trio.runtime import protocol, tracing
from iii_trio.runtime.config_modules import BuiltinQueueConfig, NamedQueueConfig, QueueConfig
from iii_trio.runtime.errors import InvocationError, TriggerConfigError, deserialization_error
from iii_trio.runtime.invocation import CallContext, LocalHandler
from iii_trio.runtime.modules.base import EngineModule, required_topic
from iii_trio.runtime.modules.queue.jobs import Job, JobStore

if TYPE_CHECKING:
    from iii_trio.runtime.config import ModuleEntry
    from iii_trio.runtime.connection import WorkerConnection
    from iii_trio.runtime.engine import Engine
    from iii_trio.runtime.registry import Binding, EngineTriggerType

log = logging.getLogger("iii_trio.queue")

# Jobs waiting or in flight across all streams, and messages held per topic without a
# subscriber: beyond these an enqueue is refused with `queue_full` rather than growing.
MAX_JOBS = 100_000
MAX_BACKLOG_PER_TOPIC = 10_000


SUPPORTED_ADAPTERS = (BuiltinQueueConfig,)
ADAPTER_HINT = "modules::queue::BuiltinQueueAdapter"


def create(engine: Engine, entry: ModuleEntry) -> QueueModule:
    assert isinstance(entry.config, QueueConfig)  # its adapter is checked by the loader
    return QueueModule(engine, entry.kind, entry.config)


def now_ms() -> int:
    return int(time.time() * 1000)


class Stream:
    """The jobs of one (queue, function) pair and the settings they are delivered with."""

    def __init__(self, queue: str, function_id: str, *, concurrency: int, fifo: bool) -> None:
        self.queue, self.function_id = queue, function_id
        self.fifo = fifo
        self.slots = trio.Semaphore(1 if fifo else concurrency)  # deliveries at once
        # (ready at, order, job): the earliest ready first; a retried job keeps its order,
        # so it goes back in front of the jobs enqueued after it.
        self.waiting: list[tuple[float, int, Job]] = []
        self.order: dict[str, int] = {}
        self.in_flight = 0
        self.changed = trio.Event()
        self.consumer: trio.CancelScope | None = None

    def push(self, job: Job, ready_at: float, order: int) -> None:
        self.order.setdefault(job.id, order)
        heapq.heappush(self.waiting, (ready_at, self.order[job.id], job))
        self.changed.set()

    def forget(self, job: Job) -> None:
        self.order.pop(job.id, None)


class QueueTrigger:
    """The ``queue`` trigger type: ``{topic, queue_config?, condition_function_id?}``."""

    id = "queue"
    description = "Consumes the jobs enqueued on a topic"

    def __init__(self, module: QueueModule) -> None:
        self.module = module
        self.topics: dict[str, list[Binding]] = {}

    def bind(self, binding: Binding) -> None:
        config = binding.config
        topic = config.get("topic") if isinstance(config, dict) else None
        if not isinstance(topic, str) or not topic:
            raise TriggerConfigError("queue trigger needs a non-empty string 'topic'")
        queue_config = config.get("queue_config")
        if queue_config is not None and not isinstance(queue_config, dict):
            raise TriggerConfigError("queue trigger 'queue_config' must be an object")
        condition = config.get("condition_function_id")
        if condition is not None and not isinstance(condition, str):
            raise TriggerConfigError("queue trigger 'condition_function_id' must be a string")
        self.topics.setdefault(topic, []).append(binding)
        self.module.subscribed(topic, binding)

    def unbind(self, binding: Binding) -> None:
        for topic, bindings in list(self.topics.items()):
            if binding in bindings:
                bindings.remove(binding)
                if not bindings:
                    del self.topics[topic]
                self.module.unsubscribed(topic, binding)

    def functions(self, topic: str) -> list[str]:
        return list(dict.fromkeys(b.function_id for b in self.topics.get(topic, ())))

    def binding_for(self, topic: str, function_id: str) -> Binding | None:
        return next((b for b in self.topics.get(topic, ()) if b.function_id == function_id), None)


class QueueModule(EngineModule):
    def __init__(self, engine: Engine, name: str, config: QueueConfig) -> None:
        super().__init__(engine, name)
        assert isinstance(config.adapter, BuiltinQueueConfig)
        self.adapter = config.adapter
        self.named: dict[str, NamedQueueConfig] = dict(config.queue_configs)
        self.trigger = QueueTrigger(self)
        self.streams: dict[tuple[str, str], Stream] = {}
        self.backlog: dict[str, list[tuple[str, Any]]] = {}
        self.dlq: dict[str, list[Job]] = {}
        self.store: JobStore | None = None
        self._order = itertools.count()
        self._nursery: trio.Nursery | None = None

    # --- module ------------------------------------------------------------------------------

    def functions(self) -> dict[str, tuple[LocalHandler, str]]:
        return {
            "enqueue": (self.enqueue, "Enqueue data for every function bound to a topic"),
            "iii::queue::redrive": (self.redrive, "Move a queue's dead letters back"),
            "iii::queue::redrive_message": (self.redrive_message, "Move one dead letter back"),
            "engine::queue::dlq_messages": (self.dlq_messages, "List a queue's dead letters"),
        }

    def trigger_types(self) -> list[EngineTriggerType]:
        return [self.trigger]

    def introspect(self) -> dict[str, Any]:
        return {
            "streams": {
                f"{q} -> {f}": {"waiting": len(s.waiting), "in_flight": s.in_flight}
                for (q, f), s in self.streams.items()
            },
            "backlog": {topic: len(held) for topic, held in self.backlog.items()},
            "dlq": {queue: len(jobs) for queue, jobs in self.dlq.items()},
        }

    async def serve(self, task_status: trio.TaskStatus[Any]) -> None:
        method = self.adapter.store_method
        self.store = await JobStore.open(self.adapter.file_path if method == "file_based" else None)
        try:
            jobs, backlog = await self.store.load()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for job in jobs:  # jobs being delivered at a crash are simply waiting again
                    if job.error is not None:
                        self.dlq.setdefault(job.queue, []).append(job)
                    else:
                        self._stream_for(job.queue, job.function_id).push(
                            job, 0.0, next(self._order)
                        )
                for topic, message_id, data in backlog:
                    self.backlog.setdefault(topic, []).append((message_id, data))
                for (queue, _), stream in self.streams.items():
                    if queue in self.named:
                        self._start_consumer(stream)
                task_status.started()
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await self.store.aclose()

    # --- streams and consumers ---------------------------------------------------------------

    def _settings(self, queue: str, function_id: str) -> tuple[int, bool, int, int]:
        """(concurrency, fifo, max attempts, backoff ms) of a stream."""
        adapter = self.adapter
        named = self.named.get(queue)
        if named is not None:
            return (
                named.concurrency or adapter.concurrency,
                named.type == "fifo",
                named.max_retries or adapter.max_attempts,
                named.backoff_ms if named.backoff_ms is not None else adapter.backoff_ms,
            )
        concurrency, fifo = adapter.concurrency, adapter.mode == "fifo"
        binding = self.trigger.binding_for(queue, function_id)
        queue_config = (binding.config or {}).get("queue_config") if binding else None
        if isinstance(queue_config, dict):
            if isinstance(queue_config.get("concurrency"), int):
                concurrency = max(1, queue_config["concurrency"])
            fifo = queue_config.get("type", "fifo" if fifo else "standard") == "fifo"
        return concurrency, fifo, adapter.max_attempts, adapter.backoff_ms

    def _stream_for(self, queue: str, function_id: str) -> Stream:
        stream = self.streams.get((queue, function_id))
        if stream is None:
            concurrency, fifo, _, _ = self._settings(queue, function_id)
            stream = Stream(queue, function_id, concurrency=concurrency, fifo=fifo)
            self.streams[(queue, function_id)] = stream
        return stream

    def _start_consumer(self, stream: Stream) -> None:
        if stream.consumer is None and self._nursery is not None:
            stream.consumer = trio.CancelScope()
            self._nursery.start_soon(self._consume, stream, stream.consumer)

    def subscribed(self, topic: str, binding: Binding) -> None:
        stream = self._stream_for(topic, binding.function_id)
        self._start_consumer(stream)
        held = self.backlog.pop(topic, None)
        if held and self._nursery is not None:
            self._nursery.start_soon(self._release_backlog, topic, held)

    def unsubscribed(self, topic: str, binding: Binding) -> None:
        if binding.function_id in self.trigger.functions(topic):
            return  # another binding of the same function still consumes
        stream = self.streams.get((topic, binding.function_id))
        if stream is not None and stream.consumer is not None:
            stream.consumer.cancel()  # its jobs wait until the function is bound again
            stream.consumer = None

    async def _release_backlog(self, topic: str, held: list[tuple[str, Any]]) -> None:
        jobs = [job for message_id, data in held for job in self._jobs_for(topic, message_id, data)]
        assert self.store is not None
        await self.store.release_backlog(topic, jobs)
        self._queue_jobs(jobs)

    async def _consume(self, stream: Stream, scope: trio.CancelScope) -> None:
        with scope:
            async with trio.open_nursery() as deliveries:
                while True:
                    now = trio.current_time()
                    if stream.waiting and stream.waiting[0][0] <= now:
                        await stream.slots.acquire()
                        if not stream.waiting or stream.waiting[0][0] > trio.current_time():
                            stream.slots.release()
                            continue
                        _, _, job = heapq.heappop(stream.waiting)
                        stream.in_flight += 1
                        deliveries.start_soon(self._deliver, stream, job)
                        continue
                    stream.changed = trio.Event()
                    with trio.move_on_at(stream.waiting[0][0] if stream.waiting else float("inf")):
                        await stream.changed.wait()

    async def _deliver(self, stream: Stream, job: Job) -> None:
        settled = False  # deleted, dead-lettered or queued for its retry
        try:
            while True:
                error = await self._attempt(stream, job)
                if error is None:
                    assert self.store is not None
                    with trio.CancelScope(shield=True):  # handled: never deliver it again
                        await self.store.delete(job)
                    stream.forget(job)
                    settled = True
                    return
                retry_in = await self._failed(stream, job, error)
                if retry_in is None:
                    settled = True
                    return
                if not stream.fifo:
                    stream.push(job, trio.current_time() + retry_in, 0)
                    settled = True
                    return
                await trio.sleep(retry_in)  # FIFO: retried in place, blocking the stream
        finally:
            if not settled:  # the consumer stopped mid-delivery: the job waits again
                stream.push(job, trio.current_time(), 0)
            stream.in_flight -= 1
            stream.slots.release()
            stream.changed.set()

    async def _attempt(self, stream: Stream, job: Job) -> str | None:
        """One delivery; None when it succeeded (or its condition said no)."""
        if self.engine.observer is None:
            return await self._attempt_once(job)
        attributes = {
            "messaging.system": "iii",
            "messaging.destination.name": job.queue,
            "messaging.message.id": job.message_id,
            "iii.function_id": job.function_id,
            "iii.queue.attempt": job.attempts_made + 1,
        }
        with tracing.span(
            self.engine, f"queue {job.queue}", kind="consumer", attributes=attributes
        ) as span:
            error = await self._attempt_once(job)
            if span is not None and error is not None:
                span.fail(error)
            return error

    async def _attempt_once(self, job: Job) -> str | None:
        router = self.engine.router
        lease = self.adapter.visibility_timeout_ms or router.default_timeout_ms
        binding = self.trigger.binding_for(job.queue, job.function_id)
        condition = (binding.config or {}).get("condition_function_id") if binding else None
        try:
            if (
                condition
                and await router.call(condition, job.data, caller_module="queue", timeout_ms=lease)
                is False
            ):
                return None  # acked and dropped for this function
            await router.call(job.function_id, job.data, caller_module="queue", timeout_ms=lease)
        except InvocationError as exc:
            return f"{exc.code}: {exc.message}"
        return None

    async def _failed(self, stream: Stream, job: Job, error: str) -> float | None:
        """Count the failure; the seconds until the retry, or None once dead-lettered."""
        assert self.store is not None
        job.attempts_made += 1
        if job.attempts_made >= job.max_attempts:
            job.error, job.failed_at = error, now_ms()
            stream.forget(job)
            self.dlq.setdefault(job.queue, []).append(job)
            await self.store.save(job)
            log.info("queue %s: job %s dead-lettered: %s", job.queue, job.id, error)
            return None
        await self.store.save(job)
        delay: float = job.backoff_delay_ms * 2 ** (job.attempts_made - 1) / 1000
        return delay

    # --- enqueueing --------------------------------------------------------------------------

    def _new_job(self, queue: str, function_id: str, message_id: str, data: Any) -> Job:
        _, _, max_attempts, backoff_ms = self._settings(queue, function_id)
        group = None
        named = self.named.get(queue)
        if named is not None and named.message_group_field and isinstance(data, dict):
            group = data.get(named.message_group_field)
        return Job(
            id=str(uuid.uuid4()),
            queue=queue,
            function_id=function_id,
            message_id=message_id,
            data=data,
            max_attempts=max_attempts,
            backoff_delay_ms=backoff_ms,
            created_at=now_ms(),
            group_id=None if group is None else str(group),
        )

    def _jobs_for(self, topic: str, message_id: str, data: Any) -> list[Job]:
        return [self._new_job(topic, f, message_id, data) for f in self.trigger.functions(topic)]

    def _queue_jobs(self, jobs: list[Job]) -> None:
        for job in jobs:
            stream = self._stream_for(job.queue, job.function_id)
            stream.push(job, trio.current_time(), next(self._order))
            if job.queue in self.named:
                self._start_consumer(stream)

    def _check_room(self, extra: int) -> None:
        waiting = sum(len(s.waiting) + s.in_flight for s in self.streams.values())
        if waiting + extra > MAX_JOBS:
            raise InvocationError("queue_full", f"more than {MAX_JOBS} jobs are waiting")

    async def enqueue(self, data: Any, ctx: CallContext) -> Any:
        topic = required_topic("enqueue", data)
        store = self.store
        assert store is not None
        message_id, payload = str(uuid.uuid4()), data.get("data")
        jobs = self._jobs_for(topic, message_id, payload)
        if not jobs:  # nobody subscribed yet: held until the first subscription
            held = self.backlog.setdefault(topic, [])
            if len(held) >= MAX_BACKLOG_PER_TOPIC:
                raise InvocationError(
                    "queue_full", f"{MAX_BACKLOG_PER_TOPIC} messages wait for a subscriber"
                )
            await store.hold(topic, message_id, payload)
            held.append((message_id, payload))
            return None
        self._check_room(len(jobs))
        await store.save(*jobs)  # committed before the caller hears back
        self._queue_jobs(jobs)
        return None

    async def enqueue_action(self, conn: WorkerConnection, msg: protocol.InvokeFunction) -> None:
        """The invoke action ``{type: "enqueue", queue}`` (spec §6.1): ``{messageReceiptId}``."""
        assert msg.action is not None
        queue = msg.action.queue or ""
        named = self.named.get(queue)
        result: Any = None
        error: protocol.ErrorBody | None = None
        if named is None:
            error = protocol.ErrorBody("enqueue_error", f"Queue '{queue}' not found")
        elif named.type == "fifo" and (
            not isinstance(msg.data, dict) or msg.data.get(named.message_group_field or "") is None
        ):
            message = f"FIFO queue '{queue}' needs the field '{named.message_group_field}'"
            error = protocol.ErrorBody("enqueue_error", message)
        else:
            job = self._new_job(queue, msg.function_id, str(uuid.uuid4()), msg.data)
            try:
                self._check_room(1)
                assert self.store is not None
                await self.store.save(job)
            except InvocationError as exc:
                error = protocol.ErrorBody("enqueue_error", exc.message)
            else:
                self._queue_jobs([job])
                result = {"messageReceiptId": job.message_id}
        if msg.invocation_id is not None:
            await self.engine.dispatcher.reply(
                conn, msg.invocation_id, msg.function_id, result=result, error=error
            )

    # --- dead letters ------------------------------------------------------------------------

    @staticmethod
    def _queue_name(function_id: str, data: Any) -> str:
        if not isinstance(data, dict):
            raise deserialization_error(function_id, "expected an object")
        queue = data.get("queue")
        if not isinstance(queue, str) or not queue:
            raise InvocationError("queue_not_set", "Queue is not set")
        return queue

    async def _redrive(self, queue: str, jobs: list[Job]) -> None:
        for job in jobs:
            job.attempts_made, job.error, job.failed_at = 0, None, None
        assert self.store is not None
        await self.store.save(*jobs)
        self._queue_jobs(jobs)

    async def redrive(self, data: Any, ctx: CallContext) -> Any:
        queue = self._queue_name("iii::queue::redrive", data)
        jobs = self.dlq.pop(queue, [])
        try:
            await self._redrive(queue, jobs)
        except Exception as exc:
            raise InvocationError("redrive_failed", f"Failed to redrive: {exc}") from exc
        return {"queue": queue, "redriven": len(jobs)}

    async def redrive_message(self, data: Any, ctx: CallContext) -> Any:
        queue = self._queue_name("iii::queue::redrive_message", data)
        message_id = data.get("message_id")
        dead = self.dlq.get(queue, [])
        chosen = [job for job in dead if job.message_id == message_id]
        if not chosen:
            raise InvocationError("message_not_found", f"Message {message_id} not found")
        self.dlq[queue] = [job for job in dead if job.message_id != message_id]
        await self._redrive(queue, chosen)
        return {"queue": queue, "message_id": message_id, "redriven": True}

    async def dlq_messages(self, data: Any, ctx: CallContext) -> Any:
        queue = self._queue_name("engine::queue::dlq_messages", data)
        messages = [
            {
                "message_id": job.message_id,
                "function_id": job.function_id,
                "job": job.record(),
                "error": job.error,
                "failed_at": job.failed_at,
            }
            for job in self.dlq.get(queue, [])
        ]
        return {"queue": queue, "messages": messages}
