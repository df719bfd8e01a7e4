"""Typed configs of every module and adapter (spec/modules.md §3-§11), with defaults filled.

Each class is both the value the engine reads and the schema the loader validates against
(see :mod:`iii_trio.runtime.config.schema`). ``None`` marks a value the spec leaves to the
module ("unverified" defaults, or "falls back to ..." as documented on the field).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

import attrs

from iii_trio.runtime.config.schema import (
    NON_NEGATIVE,
    PORT,
    POSITIVE,
    RATIO,
    Choice,
    choice_of,
    limits,
)

StoreMethod = Literal["in_memory", "file_based"]

NO_EFFECT = "accepted for compatibility with other iii versions; it has no effect here"

# -- adapters (§1.4) ----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class KvStoreConfig:
    """KvStore adapter (§4.2). ``file_based`` is SQLite; ``file_path`` may be a directory."""

    store_method: StoreMethod = "in_memory"
    file_path: str = "kv_store_data.db"
    save_interval_ms: int = attrs.field(default=5000, metadata=NON_NEGATIVE)  # no effect


@attrs.frozen(kw_only=True)
class StreamKvStoreConfig(KvStoreConfig):
    """Stream KvStore adapter (§5.1): the state store plus the in-process broadcast size."""

    channel_size: int = attrs.field(default=256, metadata=POSITIVE)


@attrs.frozen(kw_only=True)
class RedisAdapterConfig:
    """Redis adapter of any module (state, stream, queue, pubsub, cron)."""

    redis_url: str = "redis://localhost:6379"


@attrs.frozen(kw_only=True)
class BridgeAdapterConfig:
    """Bridge adapter: forwards every call to another engine."""

    bridge_url: str


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


@attrs.frozen(kw_only=True)
class RedisQueueConfig(QueueDeliveryConfig):
    """Queue RedisAdapter (§6.6; at-least-once in this build): the builtin adapter's
    delivery settings, with the jobs in Redis at ``redis_url`` instead of this engine."""

    redis_url: str = "redis://localhost:6379"


@attrs.frozen(kw_only=True)
class RabbitMQConfig:
    """RabbitMQ queue adapter (§6.6, optional; defaults unverified)."""

    amqp_url: str = "amqp://localhost:5672"
    max_attempts: int = attrs.field(default=3, metadata=POSITIVE)
    prefetch_count: int = attrs.field(default=10, metadata=POSITIVE)
    queue_mode: Literal["standard", "fifo"] = "standard"


@attrs.frozen(kw_only=True)
class LocalPubSubConfig:
    """PubSub LocalAdapter: in-process, no config."""


@attrs.frozen(kw_only=True)
class KvCronConfig:
    """Cron KvCronAdapter (§8.1): in-process lock."""

    lock_ttl_ms: int = attrs.field(default=30000, metadata=POSITIVE)
    lock_index: str = "cron_locks"


StateAdapter = KvStoreConfig | RedisAdapterConfig | BridgeAdapterConfig
StreamAdapter = StreamKvStoreConfig | RedisAdapterConfig | BridgeAdapterConfig
QueueAdapter = BuiltinQueueConfig | RedisQueueConfig | RabbitMQConfig | BridgeAdapterConfig
PubSubAdapter = LocalPubSubConfig | RedisAdapterConfig
CronAdapter = KvCronConfig | RedisAdapterConfig

STATE_ADAPTERS = (
    Choice("kv", KvStoreConfig, ("modules::state::adapters::KvStore",), ("kv",)),
    Choice("redis", RedisAdapterConfig, ("modules::state::adapters::RedisAdapter",), ("redis",)),
    Choice("bridge", BridgeAdapterConfig, ("modules::state::adapters::Bridge",)),
)
STREAM_ADAPTERS = (
    Choice("kv", StreamKvStoreConfig, ("modules::stream::adapters::KvStore",), ("kv",)),
    Choice("redis", RedisAdapterConfig, ("modules::stream::adapters::RedisAdapter",), ("redis",)),
    Choice("bridge", BridgeAdapterConfig, ("modules::stream::adapters::Bridge",)),
)
QUEUE_ADAPTERS = (
    Choice("builtin", BuiltinQueueConfig, ("modules::queue::BuiltinQueueAdapter",), ("builtin",)),
    Choice("redis", RedisQueueConfig, ("modules::queue::RedisAdapter",), ("redis",)),
    Choice("rabbitmq", RabbitMQConfig, ("modules::queue::RabbitMQAdapter",)),
    Choice("bridge", BridgeAdapterConfig, ("modules::queue::adapters::Bridge",)),
)
PUBSUB_ADAPTERS = (
    Choice("local", LocalPubSubConfig, ("modules::pubsub::LocalAdapter",)),
    Choice("redis", RedisAdapterConfig, ("modules::pubsub::RedisAdapter",), ("redis",)),
)
CRON_ADAPTERS = (
    Choice("kv", KvCronConfig, ("modules::cron::KvCronAdapter",)),
    Choice("redis", RedisAdapterConfig, ("modules::cron::RedisCronAdapter",), ("redis",)),
)

# -- modules ------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class CorsConfig:
    """``None`` for a list means that part is permissive."""

    allowed_origins: tuple[str, ...] | None = None
    allowed_methods: tuple[str, ...] | None = None
    allowed_headers: tuple[str, ...] | None = None


@attrs.frozen(kw_only=True)
class RestApiConfig:
    """RestApiModule (§3.1). ``cors`` ``None``: fully permissive."""

    ACCEPTED: ClassVar[Mapping[str, str | None]] = dict.fromkeys(
        (
            "trust_proxy",
            "request_id_header",
            "ignore_trailing_slash",
            "not_found_function",
            "middleware",
        ),
        NO_EFFECT,
    )

    port: int = attrs.field(default=3111, metadata=PORT)
    host: str = "0.0.0.0"
    default_timeout: int = attrs.field(default=30000, metadata=POSITIVE)
    concurrency_request_limit: int = attrs.field(default=1024, metadata=POSITIVE)
    body_limit: int = attrs.field(default=16777216, metadata=POSITIVE)
    cors: CorsConfig | None = None


@attrs.frozen(kw_only=True)
class StateConfig:
    """StateModule (§4.1)."""

    adapter: StateAdapter = attrs.field(
        factory=KvStoreConfig, metadata=choice_of(STATE_ADAPTERS, "state adapter")
    )


@attrs.frozen(kw_only=True)
class StreamConfig:
    """StreamModule (§5.1)."""

    port: int = attrs.field(default=3112, metadata=PORT)
    host: str = "0.0.0.0"
    auth_function: str | None = None
    adapter: StreamAdapter = attrs.field(
        factory=StreamKvStoreConfig, metadata=choice_of(STREAM_ADAPTERS, "stream adapter")
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


@attrs.frozen(kw_only=True)
class PubSubConfig:
    """PubSubModule (§7)."""

    adapter: PubSubAdapter = attrs.field(
        factory=LocalPubSubConfig, metadata=choice_of(PUBSUB_ADAPTERS, "pubsub adapter")
    )


@attrs.frozen(kw_only=True)
class CronConfig:
    """CronModule (§8.1)."""

    adapter: CronAdapter = attrs.field(
        factory=KvCronConfig, metadata=choice_of(CRON_ADAPTERS, "cron adapter")
    )


@attrs.frozen(kw_only=True)
class SamplingRule:
    operation: str | None = None
    service: str | None = None
    rate: float = attrs.field(metadata=RATIO)


@attrs.frozen(kw_only=True)
class RateLimitConfig:
    max_traces_per_second: int = attrs.field(metadata=NON_NEGATIVE)


@attrs.frozen(kw_only=True)
class SamplingConfig:
    default: float | None = attrs.field(default=None, metadata=RATIO)
    parent_based: bool | None = None
    rules: tuple[SamplingRule, ...] = ()
    rate_limit: RateLimitConfig | None = None


@attrs.frozen(kw_only=True)
class AlertAction:
    """``{type: log}``, ``{type: webhook, url}`` or ``{type: function, path}`` (§9.4)."""

    type: Literal["log", "webhook", "function"] = "log"
    url: str | None = None
    path: str | None = None

    def check(self) -> tuple[str, str] | None:
        needed = {"webhook": "url", "function": "path"}.get(self.type)
        if needed is not None and not getattr(self, needed):
            return needed, f"required when type is '{self.type}'"
        extra = {"url", "path"} - {needed or ""}
        for key in sorted(extra):
            if getattr(self, key) is not None:
                return key, f"not used when type is '{self.type}'"
        return None


@attrs.frozen(kw_only=True)
class AlertRule:
    name: str
    metric: str
    threshold: float
    operator: Literal[">", ">=", "<", "<=", "==", "!="] = ">"
    window_seconds: int = attrs.field(default=60, metadata=POSITIVE)
    cooldown_seconds: int = attrs.field(default=60, metadata=NON_NEGATIVE)
    enabled: bool = True
    action: AlertAction = attrs.field(factory=AlertAction)


@attrs.frozen(kw_only=True)
class OtelConfig:
    """OtelModule (§9.1). ``None``: the module's own default (unverified in the spec).
    ``exporter: stdout`` is kept as written and behaves as ``memory`` + console output."""

    enabled: bool | None = None
    service_name: str | None = None
    service_version: str | None = None
    service_namespace: str | None = None
    exporter: Literal["otlp", "memory", "both", "stdout"] = attrs.field(
        default="otlp",
        metadata={
            "warn_values": {
                "stdout": "'stdout' is accepted and behaves as 'memory' with console output"
            }
        },
    )
    endpoint: str | None = None
    sampling_ratio: float | None = attrs.field(default=None, metadata=RATIO)
    sampling: SamplingConfig | None = None
    memory_max_spans: int | None = attrs.field(default=None, metadata=POSITIVE)
    metrics_enabled: bool | None = None
    metrics_exporter: Literal["memory", "otlp"] | None = None
    metrics_retention_seconds: int = attrs.field(default=3600, metadata=POSITIVE)
    metrics_max_count: int = attrs.field(default=10000, metadata=POSITIVE)
    logs_enabled: bool | None = None
    logs_exporter: Literal["memory", "otlp", "both"] | None = None
    logs_max_count: int = attrs.field(default=1000, metadata=POSITIVE)
    logs_retention_seconds: int = attrs.field(default=3600, metadata=POSITIVE)
    logs_batch_size: int = attrs.field(default=100, metadata=POSITIVE)
    logs_flush_interval_ms: int = attrs.field(default=5000, metadata=POSITIVE)
    logs_sampling_ratio: float = attrs.field(default=1.0, metadata=RATIO)
    logs_console_output: bool = True
    level: str | None = None
    format: Literal["default", "json"] | None = None
    alerts: tuple[AlertRule, ...] = ()


@attrs.frozen(kw_only=True)
class WorkerConfig:
    """WorkerModule: always loaded; listing it is allowed and takes no config."""


@attrs.frozen(kw_only=True)
class TelemetryConfig:
    """TelemetryModule: a no-op. The reference's keys are accepted silently."""

    ACCEPTED: ClassVar[Mapping[str, str | None]] = dict.fromkeys(
        ("enabled", "sdk_api_key", "heartbeat_interval_secs")
    )


@attrs.frozen(kw_only=True)
class SecurityConfig:
    url_allowlist: tuple[str, ...] = ("*",)
    block_private_ips: bool = True
    require_https: bool = True


@attrs.frozen(kw_only=True)
class HttpFunctionsConfig:
    """HttpFunctionsModule (§11)."""

    security: SecurityConfig = attrs.field(factory=SecurityConfig)


@attrs.frozen(kw_only=True)
class ExecConfig:
    """ExecModule (§11): commands run with ``sh -c``, restarted when watched files change."""

    exec: tuple[str, ...] = attrs.field(metadata=limits(min_items=1))
    watch: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class ExposeEntry:
    local_function: str
    remote_function: str | None = None


@attrs.frozen(kw_only=True)
class ForwardEntry:
    local_function: str
    remote_function: str
    timeout_ms: int | None = attrs.field(default=None, metadata=POSITIVE)


@attrs.frozen(kw_only=True)
class BridgeClientConfig:
    """BridgeClientModule (§11). ``url`` ``None``: ``$III_URL``, else ``ws://0.0.0.0:49134``."""

    url: str | None = None
    service_id: str | None = None
    service_name: str | None = None
    expose: tuple[ExposeEntry, ...] = ()
    forward: tuple[ForwardEntry, ...] = ()


ModuleConfig = (
    RestApiConfig
    | StateConfig
    | StreamConfig
    | QueueConfig
    | PubSubConfig
    | CronConfig
    | OtelConfig
    | WorkerConfig
    | TelemetryConfig
    | HttpFunctionsConfig
    | ExecConfig
    | BridgeClientConfig
)

KV_SERVER_REMOVED = (
    "modules::kv_server::KvServer is not provided (it existed only briefly in the seed era); "
    "use modules::state::StateModule"
)

MODULES = (
    Choice("rest_api", RestApiConfig, ("modules::api::RestApiModule",), ("iii-http",)),
    Choice("state", StateConfig, ("modules::state::StateModule",), ("iii-state",)),
    Choice("stream", StreamConfig, ("modules::stream::StreamModule",), ("iii-stream",)),
    Choice("queue", QueueConfig, ("modules::queue::QueueModule",), ("iii-queue",)),
    Choice("pubsub", PubSubConfig, ("modules::pubsub::PubSubModule",), ("iii-pubsub",)),
    Choice("cron", CronConfig, ("modules::cron::CronModule",), ("iii-cron",)),
    Choice(
        "observability",
        OtelConfig,
        ("modules::observability::OtelModule",),
        ("iii-observability",),
    ),
    Choice("worker", WorkerConfig, ("modules::worker::WorkerModule",)),
    Choice("telemetry", TelemetryConfig, ("modules::telemetry::TelemetryModule",)),
    Choice(
        "http_functions", HttpFunctionsConfig, ("modules::http_functions::HttpFunctionsModule",)
    ),
    Choice("exec", ExecConfig, ("modules::shell::ExecModule",)),
    Choice("bridge_client", BridgeClientConfig, ("modules::bridge_client::BridgeClientModule",)),
    Choice("kv_server", WorkerConfig, ("modules::kv_server::KvServer",), removed=KV_SERVER_REMOVED),
)
