"""Settings of the QueueModule and its adapters (spec/modules.md §6.2, §6.6)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import attrs

from iii_trio.runtime.config.schema import NON_NEGATIVE, POSITIVE, Choice, StoreMethod, choice_of
from iii_trio.runtime.modules.storage.config import BridgeAdapterConfig


@attrs.frozen(kw_only=True)
class QueueDeliveryConfig:
    """How jobs are delivered (§6.2): shared by the builtin and the Redis queue adapters."""

    max_attempts: int = attrs.field(default=3, metadata=POSITIVE)  # total deliveries per job
    backoff_ms: int = attrs.field(default=1000, metadata=NON_NEGATIVE)
    concurrency: int = attrs.field(default=10, metadata=POSITIVE)
    poll_interval_ms: int = attrs.field(default=100, metadata=POSITIVE)
    mode: Literal["concurrent", "fifo"] = "concurrent"
    #: lease of one delivery; ``None`` means the engine's ``default_timeout``
    visibility_timeout_ms: int | None = attrs.field(default=None, metadata=POSITIVE)


@attrs.frozen(kw_only=True)
class BuiltinQueueConfig(QueueDeliveryConfig):
    """Builtin queue adapter (§6.2): jobs in this engine, durable with ``file_based``."""

    store_method: StoreMethod = "in_memory"
    file_path: str = "kv_store_data.db"
    save_interval_ms: int = attrs.field(default=5000, metadata=NON_NEGATIVE)  # no effect
    #: jobs waiting or in flight plus messages held for a subscriber, in all; an enqueue
    #: beyond it is refused with ``queue_full``
    max_jobs: int = attrs.field(default=100_000, metadata=POSITIVE)
    #: messages held per topic while nothing is bound to it (``queue_full`` beyond)
    max_backlog_per_topic: int = attrs.field(default=10_000, metadata=POSITIVE)
    #: dead letters kept per queue; beyond it the oldest is dropped (logged, counted)
    max_dlq_per_queue: int = attrs.field(default=10_000, metadata=POSITIVE)


@attrs.frozen(kw_only=True)
class RedisQueueConfig(QueueDeliveryConfig):
    """Queue RedisAdapter (§6.6; at-least-once in this build): the builtin adapter's
    delivery settings, with the jobs in Redis at ``redis_url`` instead of this engine."""

    redis_url: str = "redis://localhost:6379"
    #: jobs per (queue, function) stream, delayed retries included (``queue_full`` beyond)
    max_jobs_per_stream: int = attrs.field(default=100_000, metadata=POSITIVE)
    #: messages held per topic while no engine subscribes to it (``queue_full`` beyond)
    max_backlog_per_topic: int = attrs.field(default=10_000, metadata=POSITIVE)
    #: dead letters kept per queue; beyond it the oldest is dropped (logged, counted)
    max_dlq_per_queue: int = attrs.field(default=10_000, metadata=POSITIVE)


@attrs.frozen(kw_only=True)
class RabbitMQConfig:
    """RabbitMQ queue adapter (§6.6, optional; defaults unverified)."""

    amqp_url: str = "amqp://localhost:5672"
    max_attempts: int = attrs.field(default=3, metadata=POSITIVE)
    prefetch_count: int = attrs.field(default=10, metadata=POSITIVE)
    queue_mode: Literal["standard", "fifo"] = "standard"


QueueAdapter = BuiltinQueueConfig | RedisQueueConfig | RabbitMQConfig | BridgeAdapterConfig

QUEUE_ADAPTERS = (
    Choice("builtin", BuiltinQueueConfig, ("modules::queue::BuiltinQueueAdapter",), ("builtin",)),
    Choice("redis", RedisQueueConfig, ("modules::queue::RedisAdapter",), ("redis",)),
    Choice("rabbitmq", RabbitMQConfig, ("modules::queue::RabbitMQAdapter",)),
    Choice("bridge", BridgeAdapterConfig, ("modules::queue::adapters::Bridge",)),
)


@attrs.frozen(kw_only=True)
class NamedQueueConfig:
    """One entry of ``queue_configs`` (§6.2). ``None`` falls back to the adapter settings;
    FIFO queues use concurrency 1. ``max_retries`` counts total deliveries."""

    max_retries: int | None = attrs.field(default=None, metadata=POSITIVE)
    concurrency: int | None = attrs.field(default=None, metadata=POSITIVE)
    type: Literal["standard", "fifo"] = "standard"
    message_group_field: str | None = None
    backoff_ms: int | None = attrs.field(default=None, metadata=NON_NEGATIVE)
    poll_interval_ms: int | None = attrs.field(default=None, metadata=POSITIVE)

    def check(self) -> tuple[str, str] | None:
        if self.type == "fifo" and not self.message_group_field:
            return (
                "message_group_field",
                "required when type is 'fifo' (name the data field that groups messages)",
            )
        return None


@attrs.frozen(kw_only=True)
class QueueConfig:
    """QueueModule (§6.2). ``queue_configs`` maps queue name -> settings."""

    adapter: QueueAdapter = attrs.field(
        factory=BuiltinQueueConfig, metadata=choice_of(QUEUE_ADAPTERS, "queue adapter")
    )
    queue_configs: Mapping[str, NamedQueueConfig] = attrs.field(factory=dict)


CHOICE = Choice("queue", QueueConfig, ("modules::queue::QueueModule",), ("iii-queue",))
