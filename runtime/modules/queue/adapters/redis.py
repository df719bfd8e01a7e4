"""The queue's RedisAdapter (``modules::queue::RedisAdapter``): jobs live in Redis, so every
engine on one Redis shares the queues, with at-least-once delivery.

Layout (key names and scripts in :mod:`.redis_layout`; subscriptions in
:mod:`.redis_subscriptions`):

- Each (queue, function) is a Redis stream of jobs ``{m: message JSON, a: attempts made}``
  with one consumer group; each engine is one consumer of it, so replicas of a function on
  any engine compete for its jobs.
- Fan-out is decided in Redis: engines keep ``<engine> <function id>`` members in the
  topic's ``subs`` sorted set (renewed every 5 s, expiring after 15 s, so a crashed
  engine's subscriptions fade), and the enqueue script adds one job per distinct live
  function id, or holds the message in the topic's backlog list while there is none; the
  first subscription fans the backlog out (the same script, so nothing is lost between).
- A consumer reads with ``XREADGROUP`` when its stream has free slots: polled every
  ``poll_interval_ms`` while idle, at once after an enqueue or a settled job on this engine.
  A job leaves Redis only once handled (``XACK`` + ``XDEL``).
- Leases: a delivery is an invocation whose deadline is the lease (``visibility_timeout_ms``,
  else ``default_timeout``), so a hung handler fails its attempt. While this engine holds a
  job it renews the job's idle time every lease / 3; entries idle longer than the lease
  (their engine crashed or lost Redis) are taken over by the next fetch of any engine
  (``XAUTOCLAIM``), and a stopping consumer hands its jobs back at once. Such a takeover
  does not count as an attempt (as a crash does not with the builtin adapter).
- A failed job leaves the stream for the ``delayed`` sorted set, scored with its due time
  (``backoff_ms * 2^(n-1)``, Redis clock), and goes back to the end of its stream when due;
  after ``max_attempts`` it moves to the queue's DLQ hash (``<message id> <function id>``
  -> entry), ordered by a sorted set.
- FIFO streams (``mode: fifo``, ``type: fifo``) are consumed by one engine at a time, the
  owner of the stream's ``owner`` key (``SET NX PX`` lease, renewed every lease / 3): it
  runs the builtin's group order (:class:`~..streams.GroupedLine`) over up to 256 entries,
  retrying in place (attempts kept in Redis); a new owner first claims everything the old
  one held, in stream order.

Caps (``max_jobs_per_stream`` 100,000 jobs per (queue, function) stream including delayed
retries, ``max_backlog_per_topic`` 10,000 held messages per topic, ``max_dlq_per_queue``
10,000 dead letters per queue): each is checked inside the script that adds to it, so
concurrent enqueues through any number of engines never pass it together. Beyond the DLQ
cap the oldest dead letters are evicted (counted as ``dlq_dropped``, logged by
:mod:`.dlq_cap`).
Redis unreachable at startup fails the module; lost later, the connection is retried every
second, enqueues fail with ``queue_unavailable`` meanwhile and consumers resume after.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import orjson
import trio

from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.clock import now_ms
from iii_trio.runtime.modules.queue.adapters import redis_layout as layout
from iii_trio.runtime.modules.queue.adapters.dlq_cap import DeadLetterDrops
from iii_trio.runtime.modules.queue.adapters.redis_layout import (
    QueueKeys,
    RedisJob,
    RedisStream,
    StreamKeys,
    job_from_entry,
    message,
    text,
)
from iii_trio.runtime.modules.queue.adapters.redis_subscriptions import TopicSubscriptions
from iii_trio.runtime.modules.queue.config import RedisQueueConfig
from iii_trio.runtime.modules.queue.jobs import Job, Trace
from iii_trio.runtime.modules.queue.streams import Stream
from iii_trio.runtime.modules.storage.redis import (
    Arg,
    ReconnectingRedis,
    RedisConnectionError,
    RedisError,
    Script,
)

if TYPE_CHECKING:
    from iii_trio.runtime.modules.queue.adapters import QueueHost

log = logging.getLogger("iii_trio.queue")

FIFO_LOOKAHEAD = 256  # entries a FIFO owner holds, so free groups find their next job
PROMOTE_LIMIT = 256  # due retries moved back per fetch
NAMED_SCAN_SECONDS = 1.0  # how often named queues' streams are matched to local functions
SETTLE_TIMEOUT = 5.0  # a shielded Redis call during a settle or a shutdown
BATCH = 500  # commands per pipelined write
RELEASE_IDLE_MS = 10**12  # "idle since forever": any engine may claim it now
TIDY_SECONDS = 300.0  # how often a stream's group drops consumers of engines long gone
GONE_CONSUMER_IDLE_MS = 3_600_000


class RedisAdapter:
    name = "redis"

    def __init__(self, config: RedisQueueConfig, host: QueueHost) -> None:
        self.config = config
        self.host = host
        self.redis = ReconnectingRedis(
            config.redis_url, name=host.name, on_reconnect=self._reconnected
        )
        self.dlq_drops = DeadLetterDrops(config.max_dlq_per_queue)
        # One consumer name per engine process: no spaces (subscription members split on one).
        machine = socket.gethostname().replace(" ", "_")
        self.consumer_name = f"{machine}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.subscriptions = TopicSubscriptions(
            self.redis, self.consumer_name, released=self._wake, outage=self._outage
        )
        self._outage_logged = False

    def make_stream(self, queue: str, function_id: str, concurrency: int, fifo: bool) -> Stream:
        return RedisStream(queue, function_id, concurrency=concurrency, fifo=fifo)

    # Introspection shows what this engine's consumers saw last (it must not wait for Redis).

    def stream_info(self, stream: Stream) -> dict[str, Any]:
        assert isinstance(stream, RedisStream)
        return {
            "in_redis": stream.depth,
            "delayed": stream.delayed,
            "owner": stream.owner if stream.fifo else None,
        }

    def introspect(self) -> dict[str, Any]:
        dlq: dict[str, int] = {}
        for (queue, _), stream in self.host.streams.items():
            assert isinstance(stream, RedisStream)
            dlq[queue] = stream.dead
        return {
            "dlq": dlq,
            "dlq_dropped": dict(self.dlq_drops.counts),  # by this engine
            "consumer": self.consumer_name,
            "connected": self.redis.connected,
            "reconnects": self.redis.reconnects,
            "subscriptions": len(self.subscriptions.registered),
        }

    @asynccontextmanager
    async def open(self) -> AsyncIterator[None]:
        # The connection outlives the consumers' shielded clean-up (handing jobs back).
        connection_scope = trio.CancelScope(shield=True)

        async def connection(task_status: trio.TaskStatus[None]) -> None:
            with connection_scope:
                await self.redis.run(task_status)

        async with trio.open_nursery() as outer:
            await outer.start(connection)
            try:
                yield
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(SETTLE_TIMEOUT):
                    try:
                        await self.subscriptions.withdraw_all()
                    except RedisError as exc:
                        log.warning("queue: cannot withdraw this engine's subscriptions (%s)", exc)
                connection_scope.cancel()

    def start(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self.subscriptions.run)
        nursery.start_soon(self._watch_named_queues)

    # --- Redis calls -------------------------------------------------------------------------

    async def _call(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """A script for a caller: Redis errors become the caller's InvocationError."""
        try:
            return await script(self.redis, keys, args)
        except RedisConnectionError as exc:
            raise InvocationError("queue_unavailable", f"Redis is unreachable: {exc}") from None
        except RedisError as exc:
            code, _, message = str(exc).partition(" ")
            if code == "QUEUE_FULL":
                raise InvocationError("queue_full", message) from None
            raise InvocationError("queue_error", f"Redis: {exc}") from None

    async def _settle(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """A shielded, bounded call that settles a job; None when it failed (the job stays
        in Redis and is delivered again after its lease)."""
        with trio.CancelScope(shield=True), trio.move_on_after(SETTLE_TIMEOUT):
            try:
                return await script(self.redis, keys, args)
            except RedisError as exc:
                log.warning("queue: cannot settle a job in Redis (%s); it comes back later", exc)
        return None

    def _reconnected(self) -> None:
        self.subscriptions.forget_registrations()
        for stream in self.host.streams.values():
            assert isinstance(stream, RedisStream)
            stream.wake.set()

    def _outage(self, exc: Exception) -> None:
        if not self._outage_logged:
            log.warning("queue: Redis unavailable (%s); consumers retry", exc)
            self._outage_logged = True

    # --- subscriptions (topic fan-out lives in Redis) ----------------------------------------

    def subscribed(self, topic: str, function_id: str) -> None:
        self.subscriptions.add(topic, function_id)

    def unsubscribed(self, topic: str, function_id: str) -> None:
        self.subscriptions.remove(topic, function_id)

    # --- named queues: consumed where their function lives -----------------------------------

    async def _watch_named_queues(self) -> None:
        queues = sorted(self.host.named)
        while queues:
            try:
                replies = await self.redis.execute_many(
                    [["SMEMBERS", QueueKeys(queue).functions] for queue in queues]
                )
            except RedisError as exc:
                self._outage(exc)
                replies = []
            for queue, members in zip(queues, replies, strict=False):
                if isinstance(members, RedisError):
                    continue
                for function_id in map(text, members):
                    if self.host.has_function(function_id):
                        self.host.start_consumer(self.host.stream_for(queue, function_id))
                    elif (stream := self.host.streams.get((queue, function_id))) is not None:
                        self.host.stop_consumer(stream)
            await trio.sleep(NAMED_SCAN_SECONDS)

    def _wake(self, queue: str, function_id: str | None = None) -> None:
        for (q, f), stream in self.host.streams.items():
            if q == queue and function_id in (None, f):
                assert isinstance(stream, RedisStream)
                stream.wake.set()

    # --- enqueueing --------------------------------------------------------------------------

    async def enqueue_topic(self, topic: str, message_id: str, data: Any, trace: Trace) -> None:
        try:
            await self.subscriptions.register_pending(topic)
        except RedisError as exc:
            raise InvocationError("queue_unavailable", f"Redis is unreachable: {exc}") from None
        job = self.host.new_job(topic, "", message_id, data, trace)
        keys = QueueKeys(topic)
        made = await self._call(
            layout.ENQUEUE_TOPIC,
            [keys.subs, keys.backlog],
            [
                topic,
                message(job),
                self.config.max_jobs_per_stream,
                self.config.max_backlog_per_topic,
            ],
        )
        if made:
            self._wake(topic)

    async def enqueue_job(self, job: Job) -> None:
        keys = StreamKeys(job.queue, job.function_id)
        await self._call(
            layout.ENQUEUE_NAMED,
            [keys.jobs, keys.delayed, QueueKeys(job.queue).functions],
            [message(job), job.function_id, self.config.max_jobs_per_stream],
        )
        if self.host.has_function(job.function_id):
            self.host.start_consumer(self.host.stream_for(job.queue, job.function_id))
            self._wake(job.queue, job.function_id)

    # --- consuming ---------------------------------------------------------------------------

    def stream_tasks(self, stream: Stream, nursery: trio.Nursery) -> None:
        assert isinstance(stream, RedisStream)
        if stream.fifo:
            nursery.start_soon(self._feed_fifo, stream, nursery)
        else:
            nursery.start_soon(self._feed, stream)
            nursery.start_soon(self._renew_leases, stream)
        nursery.start_soon(self._tidy_group, stream)

    async def _fetch(self, stream: RedisStream, count: int, claim_idle_ms: int) -> tuple[int, int]:
        """Take up to ``count`` jobs from Redis into the stream's line: (entries seen, ms
        until the next retry is due or -1)."""
        keys = stream.keys
        reply = await layout.FETCH(
            self.redis,
            [keys.jobs, keys.delayed, keys.attempts, QueueKeys(stream.queue).dlq_order],
            [self.consumer_name, count, claim_idle_ms, PROMOTE_LIMIT, stream.cursor],
        )
        self._outage_logged = False
        entries, attempts, wait_ms, stream.depth, stream.delayed, cursor, stream.dead = reply
        stream.cursor = text(cursor)
        for entry, made in zip(entries, attempts, strict=True):
            if text(entry[0]) in stream.held:
                continue  # ours already (its lease lapsed before we renewed it)
            try:
                job = job_from_entry(stream, entry, made)
            except ValueError as exc:
                log.warning("queue %s: dropping a job entry: %s", stream.queue, exc)
                await self._settle(layout.ACK, [keys.jobs, keys.attempts], [text(entry[0])])
                continue
            stream.held[job.entry_id] = job
            stream.push(job, trio.current_time(), self.host.next_order())
        return len(entries), int(wait_ms)

    async def _feed(self, stream: RedisStream) -> None:
        """Keep a concurrent stream's free slots filled from Redis."""
        poll = self.host.poll_interval(stream.queue)
        while True:
            stream.wake = trio.Event()  # before the fetch: a wake meanwhile is not lost
            room = stream.concurrency - len(stream.held)
            timeout = math.inf  # full: wait until a job settles
            if room > 0:
                try:
                    seen, due_ms = await self._fetch(stream, room, self.host.lease_ms())
                except RedisError as exc:
                    self._outage(exc)
                    timeout = self.redis.retry_seconds
                else:
                    if seen >= room:
                        continue  # there may be more
                    timeout = poll if due_ms < 0 else min(poll, due_ms / 1000)
            with trio.move_on_after(timeout):
                await stream.wake.wait()

    async def _renew_leases(self, stream: RedisStream) -> None:
        every = self.host.lease_ms() / 3000
        while True:
            await trio.sleep(every)
            if stream.held:
                ids = list(stream.held)
                try:
                    await layout.TOUCH(
                        self.redis, [stream.keys.jobs], [self.consumer_name, 0, *ids]
                    )
                except RedisError as exc:
                    self._outage(exc)

    async def _tidy_group(self, stream: RedisStream) -> None:
        """Every engine that ever read a stream stays a consumer of its group: drop those
        with nothing pending that have not read for an hour (their engine is gone)."""
        while True:
            await trio.sleep(TIDY_SECONDS)
            try:
                rows = await self.redis.execute(
                    "XINFO", "CONSUMERS", stream.keys.jobs, layout.GROUP
                )
                for row in rows:
                    info = {text(row[i]): row[i + 1] for i in range(0, len(row), 2)}
                    name = text(info["name"])
                    if (
                        name != self.consumer_name
                        and info["pending"] == 0
                        and info["idle"] > GONE_CONSUMER_IDLE_MS
                    ):
                        await self.redis.execute(
                            "XGROUP", "DELCONSUMER", stream.keys.jobs, layout.GROUP, name
                        )
            except RedisError as exc:
                self._outage(exc)

    async def _feed_fifo(self, stream: RedisStream, nursery: trio.Nursery) -> None:
        """Own the stream, then keep up to FIFO_LOOKAHEAD of its entries here, the ones a
        previous owner left first."""
        ttl = self.host.lease_ms()
        poll = self.host.poll_interval(stream.queue)
        while not stream.owner:
            try:
                stream.owner = bool(
                    await layout.OWN(self.redis, [stream.keys.owner], [self.consumer_name, ttl])
                )
            except RedisError as exc:
                self._outage(exc)
            if not stream.owner:
                await trio.sleep(poll)
        nursery.start_soon(self._keep_owning, stream, ttl)
        claiming, stream.cursor = True, "0-0"
        while True:
            stream.wake = trio.Event()
            room = FIFO_LOOKAHEAD - len(stream.held)
            timeout = math.inf
            if room > 0:
                try:
                    seen, _ = await self._fetch(stream, room, 0 if claiming else -1)
                except RedisError as exc:
                    self._outage(exc)
                    timeout = self.redis.retry_seconds
                else:
                    was_claiming, claiming = claiming, claiming and stream.cursor != "0-0"
                    if seen >= room or was_claiming:
                        continue
                    timeout = poll
            with trio.move_on_after(timeout):
                await stream.wake.wait()

    async def _keep_owning(self, stream: RedisStream, ttl: int) -> None:
        while True:
            await trio.sleep(ttl / 3000)
            try:
                kept = await layout.OWN(self.redis, [stream.keys.owner], [self.consumer_name, ttl])
            except RedisError as exc:
                self._outage(exc)
                continue
            if not kept:
                log.warning("queue %s: lost FIFO ownership; starting over", stream.queue)
                self.host.stop_consumer(stream)
                self.host.start_consumer(stream)
                return

    async def consumer_stopped(self, stream: Stream) -> None:
        assert isinstance(stream, RedisStream)
        ids = list(stream.held)
        stream.held.clear()
        stream.clear()
        owner, stream.owner = stream.owner, False
        with trio.move_on_after(SETTLE_TIMEOUT):
            try:
                if stream.fifo:
                    if owner:  # the next owner claims what this engine held
                        await layout.DISOWN(self.redis, [stream.keys.owner], [self.consumer_name])
                elif ids:  # handed back: claimable at once
                    await layout.TOUCH(
                        self.redis, [stream.keys.jobs], [self.consumer_name, RELEASE_IDLE_MS, *ids]
                    )
            except RedisError as exc:
                log.warning("queue %s: cannot hand jobs back (%s)", stream.queue, exc)

    # --- delivery outcomes -------------------------------------------------------------------

    def _settled(self, stream: Stream, job: Job) -> tuple[RedisStream, RedisJob]:
        assert isinstance(stream, RedisStream)
        assert isinstance(job, RedisJob)
        stream.held.pop(job.entry_id, None)
        stream.forget(job)
        stream.wake.set()  # a slot is free
        return stream, job

    async def succeeded(self, stream: Stream, job: Job) -> None:
        stream, job = self._settled(stream, job)
        await self._settle(layout.ACK, [stream.keys.jobs, stream.keys.attempts], [job.entry_id])

    async def retry_later(self, stream: Stream, job: Job, delay: float) -> None:
        stream, job = self._settled(stream, job)
        member = b"%d %s" % (job.attempts_made, message(job))
        keys = [stream.keys.jobs, stream.keys.delayed]
        await self._settle(layout.RETRY, keys, [job.entry_id, member, int(delay * 1000)])

    async def failed_in_place(self, stream: Stream, job: Job) -> None:
        assert isinstance(stream, RedisStream)
        assert isinstance(job, RedisJob)
        with trio.move_on_after(SETTLE_TIMEOUT):
            try:
                await self.redis.execute(
                    "HSET", stream.keys.attempts, job.entry_id, job.attempts_made
                )
            except RedisError as exc:
                log.warning("queue %s: cannot record an attempt (%s)", stream.queue, exc)

    async def dead_lettered(self, stream: Stream, job: Job) -> None:
        stream, job = self._settled(stream, job)
        queue = QueueKeys(job.queue)
        entry = {
            "message_id": job.message_id,
            "function_id": job.function_id,
            "job": job.record(),
            "error": job.error,
            "failed_at": job.failed_at,
            "traceparent": job.traceparent,  # outside "job": its shape is the spec's
            "baggage": job.baggage,
        }
        evicted = await self._settle(
            layout.DEAD,
            [stream.keys.jobs, stream.keys.attempts, queue.dlq, queue.dlq_order],
            [
                job.entry_id,
                f"{job.message_id} {job.function_id}",
                orjson.dumps(entry),
                job.failed_at or now_ms(),
                self.config.max_dlq_per_queue,
            ],
        )
        if evicted and evicted > 0:
            self.dlq_drops.dropped(job.queue, int(evicted))

    def abandoned(self, stream: Stream, job: Job) -> None:
        pass  # still held: the consumer's clean-up hands it back

    # --- dead letters ------------------------------------------------------------------------

    async def dead_letters(self, queue: str) -> list[Job]:
        keys = QueueKeys(queue)
        try:
            fields = await self.redis.execute("ZRANGE", keys.dlq_order, 0, -1)
            raws = await self.redis.execute("HMGET", keys.dlq, *fields) if fields else []
        except RedisError as exc:
            raise InvocationError("queue_unavailable", f"Redis: {exc}") from None
        jobs = []
        for raw in raws:
            if raw is None:
                continue  # redriven between the two reads
            entry = orjson.loads(raw)
            jobs.append(
                Job(
                    **entry["job"],
                    error=entry["error"],
                    failed_at=entry["failed_at"],
                    traceparent=entry.get("traceparent"),
                    baggage=entry.get("baggage"),
                )
            )
        return jobs

    async def redrive(self, queue: str, message_id: str | None) -> int:
        keys = QueueKeys(queue)
        try:
            flat = await self.redis.execute("HGETALL", keys.dlq)
        except RedisError as exc:
            raise InvocationError("queue_unavailable", f"Redis: {exc}") from None
        commands: list[list[Arg]] = []
        targets: list[tuple[str, str]] = []
        for field, raw in zip(flat[::2], flat[1::2], strict=True):
            entry = orjson.loads(raw)
            if message_id is not None and entry["message_id"] != message_id:
                continue
            job = Job(
                **entry["job"],
                traceparent=entry.get("traceparent"),
                baggage=entry.get("baggage"),
            )
            stream = StreamKeys(queue, job.function_id)
            commands.append(
                layout.REDRIVE.command(
                    [keys.dlq, keys.dlq_order, stream.jobs, keys.functions],
                    [field, message(job), job.function_id],
                )
            )
            targets.append((queue, job.function_id))
        if not commands:
            return 0
        await layout.REDRIVE.load(self.redis)  # the batch uses EVALSHA only
        replies: list[Any] = []
        for start in range(0, len(commands), BATCH):
            replies += await self.redis.execute_many(commands[start : start + BATCH])
        failures = [reply for reply in replies if isinstance(reply, RedisError)]
        if failures:
            raise failures[0]
        for target in set(targets):
            if queue in self.host.named and self.host.has_function(target[1]):
                self.host.start_consumer(self.host.stream_for(*target))
            self._wake(*target)
        return sum(1 for reply in replies if reply == 1)
