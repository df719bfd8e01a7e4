"""Settings of the observability module, OtelModule (spec/modules.md §9.1, §9.4)."""

from __future__ import annotations

from typing import Literal

import attrs

from iii_trio.runtime.config.schema import NON_NEGATIVE, POSITIVE, RATIO, Choice


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


CHOICE = Choice(
    "observability", OtelConfig, ("modules::observability::OtelModule",), ("iii-observability",)
)
