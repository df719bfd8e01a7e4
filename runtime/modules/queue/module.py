"""The QueueModule: what both queue adapters share: the ``queue`` trigger, the functions'
input checks, the settings of each (queue, function) stream and the consumer that delivers
its jobs.

The module holds the adapter its config names (:mod:`.adapters`), which decides where jobs
live: how an enqueue is stored (and fanned out), and what happens to a job when its delivery
succeeded, failed for good (DLQ), failed with a retry to come, or was cut off.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import trio

from iii_trio.runtime.calls import inputs
from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.calls.invocation import CallContext, LocalHandler
from iii_trio.runtime.clock import now_ms
from iii_trio.runtime.modules.base import EngineModule, TopicMessage
from iii_trio.runtime.modules.context import GaugeFamily
from iii_trio.runtime.modules.queue import adapters
from iii_trio.runtime.modules.queue.config import (
    BuiltinQueueConfig,
    NamedQueueConfig,
    QueueConfig,
    RedisQueueConfig,
)
from iii_trio.runtime.modules.queue.inputs import DeadLetterRef, QueueName, QueueTriggerConfig
from iii_trio.runtime.modules.queue.jobs import NO_TRACE, Job, Trace
from iii_trio.runtime.modules.queue.streams import Stream

if TYPE_CHECKING:
    from iii_trio.runtime.calls.registry import Binding, EngineTriggerType
    from iii_trio.runtime.connections.dispatch import InvokeAction
    from iii_trio.runtime.modules.context import ModuleContext
    from iii_trio.runtime.wire import protocol

log = logging.getLogger("iii_trio.queue")


class QueueTrigger:
    """The ``queue`` trigger type: ``{topic, queue_config?, condition_function_id?}``."""

    id = "queue"
    description = "Consumes the jobs enqueued on a topic"

    def __init__(self, module: QueueModule) -> None:
        self.module = module
        self.topics: dict[str, list[Binding]] = {}

    def bind(self, binding: Binding) -> None:
        topic = inputs.structure_config(binding.config, QueueTriggerConfig).topic
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
    def __init__(self, ctx: ModuleContext, config: QueueConfig) -> None:
        super().__init__(ctx)
        assert isinstance(config.adapter, BuiltinQueueConfig | RedisQueueConfig)
        self.delivery = config.adapter  # the delivery settings both adapters take
        self.named: dict[str, NamedQueueConfig] = dict(config.queue_configs)
        self.trigger = QueueTrigger(self)
        self.streams: dict[tuple[str, str], Stream] = {}
        self._order = itertools.count()
        self._nursery: trio.Nursery | None = None
        self.adapter = adapters.create(config.adapter, self)

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

    def invoke_actions(self) -> Mapping[str, InvokeAction]:
        return {"enqueue": self.enqueue_action}

    def gauges(self) -> list[GaugeFamily]:
        """Rendered on ``/metrics`` by the observability module."""

        def waiting() -> Iterator[tuple[Mapping[str, str], float]]:
            for (queue, function_id), stream in self.streams.items():
                yield {"queue": queue, "function_id": function_id}, stream.waiting

        def in_flight() -> Iterator[tuple[Mapping[str, str], float]]:
            for (queue, function_id), stream in self.streams.items():
                yield {"queue": queue, "function_id": function_id}, stream.in_flight

        def dead_letters() -> Iterator[tuple[Mapping[str, str], float]]:
            for queue, size in self.introspect().get("dlq", {}).items():
                yield {"queue": queue}, size

        return [
            GaugeFamily("iii_queue_depth", "Jobs waiting per queue and function", waiting),
            GaugeFamily(
                "iii_queue_in_flight", "Jobs being delivered per queue and function", in_flight
            ),
            GaugeFamily("iii_queue_dlq_size", "Dead-lettered jobs per queue", dead_letters),
        ]

    def introspect(self) -> dict[str, Any]:
        return {
            "adapter": self.adapter.name,
            "streams": {
                f"{q} -> {f}": {
                    "waiting": s.waiting,
                    "in_flight": s.in_flight,
                    **self.adapter.stream_info(s),
                }
                for (q, f), s in self.streams.items()
            },
            **self.adapter.introspect(),
        }

    async def serve(self, task_status: trio.TaskStatus[Any]) -> None:
        async with self.adapter.open():
            try:
                async with trio.open_nursery() as nursery:  # the consumers
                    self._nursery = nursery
                    self.adapter.start(nursery)
                    task_status.started()
                    await trio.sleep_forever()
            finally:
                self._nursery = None

    # --- streams and consumers ---------------------------------------------------------------

    def _settings(self, queue: str, function_id: str) -> tuple[int, bool, int, int]:
        """(concurrency, fifo, max attempts, backoff ms) of a stream."""
        delivery = self.delivery
        named = self.named.get(queue)
        if named is not None:
            fifo = named.type == "fifo"
            return (
                named.concurrency or (1 if fifo else delivery.concurrency),
                fifo,
                named.max_retries or delivery.max_attempts,
                named.backoff_ms if named.backoff_ms is not None else delivery.backoff_ms,
            )
        concurrency, fifo = delivery.concurrency, delivery.mode == "fifo"
        binding = self.trigger.binding_for(queue, function_id)
        queue_config = (binding.config or {}).get("queue_config") if binding else None
        if isinstance(queue_config, dict):
            if isinstance(queue_config.get("concurrency"), int):
                concurrency = max(1, queue_config["concurrency"])
            fifo = queue_config.get("type", "fifo" if fifo else "standard") == "fifo"
        return concurrency, fifo, delivery.max_attempts, delivery.backoff_ms

    def poll_interval(self, queue: str) -> float:
        named = self.named.get(queue)
        ms = named.poll_interval_ms if named and named.poll_interval_ms else None
        return (ms or self.delivery.poll_interval_ms) / 1000

    def lease_ms(self) -> int:
        return self.delivery.visibility_timeout_ms or self.ctx.default_timeout_ms

    def has_function(self, function_id: str) -> bool:
        return self.ctx.has_function(function_id)

    def functions_of(self, topic: str) -> list[str]:
        return self.trigger.functions(topic)

    def next_order(self) -> int:
        return next(self._order)

    def stream_for(self, queue: str, function_id: str) -> Stream:
        stream = self.streams.get((queue, function_id))
        if stream is None:
            concurrency, fifo, _, _ = self._settings(queue, function_id)
            stream = self.adapter.make_stream(queue, function_id, concurrency, fifo)
            self.streams[(queue, function_id)] = stream
        return stream

    def start_consumer(self, stream: Stream) -> None:
        if stream.consumer is None and self._nursery is not None:
            stream.consumer = trio.CancelScope()
            self._nursery.start_soon(self._consume, stream, stream.consumer)

    def stop_consumer(self, stream: Stream) -> None:
        if stream.consumer is not None:
            stream.consumer.cancel()  # its jobs wait until the function is bound again
            stream.consumer = None

    def subscribed(self, topic: str, binding: Binding) -> None:
        self.start_consumer(self.stream_for(topic, binding.function_id))
        self.adapter.subscribed(topic, binding.function_id)

    def unsubscribed(self, topic: str, binding: Binding) -> None:
        if binding.function_id in self.trigger.functions(topic):
            return  # another binding of the same function still consumes
        stream = self.streams.get((topic, binding.function_id))
        if stream is not None:
            self.stop_consumer(stream)
        self.adapter.unsubscribed(topic, binding.function_id)

    async def _consume(self, stream: Stream, scope: trio.CancelScope) -> None:
        with scope:
            async with stream.consuming:
                await self._consume_locked(stream)

    async def _consume_locked(self, stream: Stream) -> None:
        try:
            async with trio.open_nursery() as deliveries:
                self.adapter.stream_tasks(stream, deliveries)
                while True:
                    await stream.slots.acquire()
                    try:
                        job = await stream.next_job()
                    except BaseException:
                        stream.slots.release()
                        raise
                    stream.in_flight += 1
                    deliveries.start_soon(self._deliver, stream, job)
        finally:
            with trio.CancelScope(shield=True):
                await self.adapter.consumer_stopped(stream)

    async def _deliver(self, stream: Stream, job: Job) -> None:
        settled = False  # handled, dead-lettered or handed over for its retry
        try:
            while True:
                error = await self._attempt(stream, job)
                if error is None:
                    with trio.CancelScope(shield=True):  # handled: never deliver it again
                        await self.adapter.succeeded(stream, job)
                    settled = True
                    return
                retry_in = await self._failed(stream, job, error)
                if retry_in is None:
                    settled = True
                    return
                if not stream.fifo:
                    await self.adapter.retry_later(stream, job, retry_in)
                    settled = True
                    return
                await self.adapter.failed_in_place(stream, job)
                await trio.sleep(retry_in)  # FIFO: retried in place, blocking its group
        finally:
            stream.line.done(job)
            if not settled:  # the consumer stopped mid-delivery
                self.adapter.abandoned(stream, job)
            stream.in_flight -= 1
            stream.slots.release()
            stream.changed.set()

    async def _attempt(self, stream: Stream, job: Job) -> str | None:
        """One delivery; None when it succeeded (or its condition said no)."""
        if self.ctx.observer is None:
            return await self._attempt_once(job, job.traceparent)
        attributes = {
            "messaging.system": "iii",
            "messaging.destination.name": job.queue,
            "messaging.message.id": job.message_id,
            "iii.function_id": job.function_id,
            "iii.queue.attempt": job.attempts_made + 1,
        }
        with self.ctx.span(
            f"queue {job.queue}",
            kind="consumer",
            attributes=attributes,
            traceparent=job.traceparent,
        ) as span:  # a child of the enqueuer's span
            error = await self._attempt_once(job, span.traceparent() if span else None)
            if span is not None and error is not None:
                span.fail(error)
            return error

    async def _attempt_once(self, job: Job, traceparent: str | None) -> str | None:
        """One delivery, continuing ``traceparent`` (the consumer span's, else the job's)
        with the job's baggage."""
        binding = self.trigger.binding_for(job.queue, job.function_id)
        condition = (binding.config or {}).get("condition_function_id") if binding else None
        trace = Trace(traceparent, job.baggage)
        try:
            if condition and await self._invoke(condition, job.data, trace) is False:
                return None  # acked and dropped for this function
            await self._invoke(job.function_id, job.data, trace)
        except InvocationError as exc:
            return f"{exc.code}: {exc.message}"
        return None

    async def _invoke(self, function_id: str, data: Any, trace: Trace) -> Any:
        # A delivery cut off (its consumer stopped) abandons its invocation, so the job it
        # hands back is not still running here when it is delivered again.
        return await self.ctx.call(
            function_id,
            data,
            timeout_ms=self.lease_ms(),
            abandon_on_cancel=True,
            traceparent=trace.traceparent,
            baggage=trace.baggage,
        )

    async def _failed(self, stream: Stream, job: Job, error: str) -> float | None:
        """Count the failure; the seconds until the retry, or None once dead-lettered."""
        job.attempts_made += 1
        if job.attempts_made >= job.max_attempts:
            job.error, job.failed_at = error, now_ms()
            await self.adapter.dead_lettered(stream, job)
            log.info("queue %s: job %s dead-lettered: %s", job.queue, job.id, error)
            return None
        delay: float = job.backoff_delay_ms * 2 ** (job.attempts_made - 1) / 1000
        return delay

    # --- enqueueing --------------------------------------------------------------------------

    def new_job(
        self, queue: str, function_id: str, message_id: str, data: Any, trace: Trace = NO_TRACE
    ) -> Job:
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
            traceparent=trace.traceparent,
            baggage=trace.baggage,
        )

    async def enqueue(self, data: Any, ctx: CallContext) -> Any:
        message = inputs.structure("enqueue", data, TopicMessage)
        trace = Trace(ctx.traceparent, ctx.baggage)
        await self.adapter.enqueue_topic(message.topic, str(uuid.uuid4()), message.data, trace)
        return None

    async def enqueue_named(
        self, queue: str, function_id: str, data: Any, trace: Trace = NO_TRACE
    ) -> str:
        """Store a job of the named queue for ``function_id``; its message id (the receipt).
        Raises ``InvocationError("enqueue_error", ...)`` as the invoke action answers."""
        named = self.named.get(queue)
        if named is None:
            raise InvocationError("enqueue_error", f"Queue '{queue}' not found")
        if named.type == "fifo" and (
            not isinstance(data, dict) or data.get(named.message_group_field or "") is None
        ):
            message = f"FIFO queue '{queue}' needs the field '{named.message_group_field}'"
            raise InvocationError("enqueue_error", message)
        job = self.new_job(queue, function_id, str(uuid.uuid4()), data, trace)
        try:
            await self.adapter.enqueue_job(job)
        except InvocationError as exc:
            raise InvocationError("enqueue_error", exc.message) from None
        return job.message_id

    async def enqueue_action(
        self,
        function_id: str,
        data: Any,
        action: protocol.Action,
        /,
        *,
        traceparent: str | None,
        baggage: str | None,
    ) -> Any:
        """The invoke action ``{type: "enqueue", queue}`` (spec §6.1): ``{messageReceiptId}``,
        or ``enqueue_error``. The job continues the frame's trace."""
        trace = Trace(traceparent, baggage)
        receipt = await self.enqueue_named(action.queue or "", function_id, data, trace)
        return {"messageReceiptId": receipt}

    # --- dead letters ------------------------------------------------------------------------

    async def redrive(self, data: Any, ctx: CallContext) -> Any:
        queue = inputs.structure("iii::queue::redrive", data, QueueName).queue
        try:
            redriven = await self.adapter.redrive(queue, None)
        except InvocationError:
            raise
        except Exception as exc:
            raise InvocationError("redrive_failed", f"Failed to redrive: {exc}") from exc
        return {"queue": queue, "redriven": redriven}

    async def redrive_message(self, data: Any, ctx: CallContext) -> Any:
        ref = inputs.structure("iii::queue::redrive_message", data, DeadLetterRef)
        queue, message_id = ref.queue, ref.message_id
        try:
            redriven = isinstance(message_id, str) and await self.adapter.redrive(queue, message_id)
        except InvocationError:
            raise
        except Exception as exc:
            raise InvocationError("redrive_failed", f"Failed to redrive: {exc}") from exc
        if not redriven:
            raise InvocationError("message_not_found", f"Message {message_id} not found")
        return {"queue": queue, "message_id": message_id, "redriven": True}

    async def dlq_messages(self, data: Any, ctx: CallContext) -> Any:
        queue = inputs.structure("engine::queue::dlq_messages", data, QueueName).queue
        messages = [
            {
                "message_id": job.message_id,
                "function_id": job.function_id,
                "job": job.record(),
                "error": job.error,
                "failed_at": job.failed_at,
            }
            for job in await self.adapter.dead_letters(queue)
        ]
        return {"queue": queue, "messages": messages}
