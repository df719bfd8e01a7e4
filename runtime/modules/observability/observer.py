"""The hooks the engine calls while the observability module runs (``engine.observer``).

Kept cheap because the router calls it twice per invocation: a span is a slotted object,
metrics are a few integer updates, and everything lands in a bounded ring. Worker
telemetry frames are parsed here, in the connection's reader, and stored the same way.
"""

from __future__ import annotations

import fnmatch
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import orjson

from iii_trio.runtime.calls import tracing
from iii_trio.runtime.calls.tracing import Span, current_span, new_span_id, new_trace_id
from iii_trio.runtime.modules.observability import ingest
from iii_trio.runtime.modules.observability.alerts import Windows
from iii_trio.runtime.modules.observability.config import OtelConfig
from iii_trio.runtime.modules.observability.metrics import EngineMetrics
from iii_trio.runtime.modules.observability.rollups import Rollups
from iii_trio.runtime.modules.observability.stores import DEFAULT_MAX_SPANS, Ring

if TYPE_CHECKING:
    from iii_trio.runtime.calls.invocation import Invocation
    from iii_trio.runtime.calls.peer import Peer
    from iii_trio.runtime.modules.context import ModuleContext
    from iii_trio.runtime.modules.observability.export import OtlpExporter
    from iii_trio.runtime.modules.observability.inputs import LogEntry
    from iii_trio.runtime.wire.protocol import Telemetry

log = logging.getLogger("iii_trio.otel")
console = logging.getLogger("iii_trio.otel.logs")

DEFAULT_SERVICE_NAME = "iii-trio"
# Distinct metric names kept in one worker's latest_metrics (engine::workers::list).
MAX_LATEST_METRICS = 256
SEVERITIES = {"trace": 1, "debug": 5, "info": 9, "warn": 13, "error": 17}
_CONSOLE_LEVELS = {1: logging.DEBUG, 5: logging.DEBUG, 9: logging.INFO, 13: logging.WARNING}


@attrs.frozen
class Settings:
    """OtelConfig with this module's defaults filled in (docs/operations.md lists them)."""

    enabled: bool
    service_name: str
    service_version: str | None
    spans_in_memory: bool
    spans_to_otlp: bool
    spans_console: bool
    logs_enabled: bool
    logs_in_memory: bool
    logs_to_otlp: bool
    logs_console: bool
    metrics_enabled: bool
    metrics_to_otlp: bool
    max_spans: int
    max_logs: int
    max_metrics: int
    logs_retention_s: int
    metrics_retention_s: int
    sampling_default: float
    parent_based: bool
    rules: tuple[tuple[str | None, str | None, float], ...]
    max_traces_per_second: int | None
    logs_sampling_ratio: float
    # service.name, and service.version / service.namespace when configured: the resource
    # of the engine's own spans, logs and metrics.
    resource: dict[str, str]

    @classmethod
    def from_config(cls, config: OtelConfig) -> Settings:
        exporter = config.exporter
        otlp = config.endpoint is not None
        logs_exporter = config.logs_exporter or "memory"
        sampling = config.sampling
        default = sampling.default if sampling and sampling.default is not None else None
        if default is None:
            default = config.sampling_ratio if config.sampling_ratio is not None else 1.0
        return cls(
            enabled=config.enabled is not False,
            service_name=config.service_name or DEFAULT_SERVICE_NAME,
            service_version=config.service_version,
            spans_in_memory=exporter in ("memory", "both", "stdout"),
            spans_to_otlp=otlp and exporter in ("otlp", "both"),
            spans_console=exporter == "stdout",
            logs_enabled=config.logs_enabled is not False,
            logs_in_memory=logs_exporter in ("memory", "both"),
            logs_to_otlp=otlp and logs_exporter in ("otlp", "both"),
            logs_console=config.logs_console_output,
            metrics_enabled=config.metrics_enabled is not False,
            metrics_to_otlp=otlp and config.metrics_exporter == "otlp",
            max_spans=config.memory_max_spans or DEFAULT_MAX_SPANS,
            max_logs=config.logs_max_count,
            max_metrics=config.metrics_max_count,
            logs_retention_s=config.logs_retention_seconds,
            metrics_retention_s=config.metrics_retention_seconds,
            sampling_default=default,
            parent_based=not sampling or sampling.parent_based is not False,
            rules=tuple((r.operation, r.service, r.rate) for r in sampling.rules)
            if sampling
            else (),
            max_traces_per_second=sampling.rate_limit.max_traces_per_second
            if sampling and sampling.rate_limit
            else None,
            logs_sampling_ratio=config.logs_sampling_ratio,
            resource={
                key: value
                for key, value in (
                    ("service.name", config.service_name or DEFAULT_SERVICE_NAME),
                    ("service.version", config.service_version),
                    ("service.namespace", config.service_namespace),
                )
                if value
            },
        )


def _log_stamp(record: dict[str, Any]) -> int:
    stamp: int = record["timestamp_unix_nano"]
    return stamp


def _metric_stamp(point: dict[str, Any]) -> int:
    stamp: int = point["timestamp_unix_nano"]
    return stamp


class Sampler:
    """Head sampling of new traces: the first matching rule's rate, else the default; with
    ``parent_based`` a child follows its parent's decision; ``rate_limit`` caps new sampled
    traces per second."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._random = random.Random()
        self._second = 0
        self._this_second = 0

    def root(self, name: str, service: str) -> bool:
        rate = self.settings.sampling_default
        for operation, rule_service, rule_rate in self.settings.rules:
            if (operation is None or fnmatch.fnmatchcase(name, operation)) and (
                rule_service is None or rule_service == service
            ):
                rate = rule_rate
                break
        if rate < 1.0 and self._random.random() >= rate:
            return False
        limit = self.settings.max_traces_per_second
        if limit is not None:
            second = int(time.monotonic())
            if second != self._second:
                self._second, self._this_second = second, 0
            if self._this_second >= limit:
                return False
            self._this_second += 1
        return True


class EngineObserver:
    def __init__(self, ctx: ModuleContext, settings: Settings) -> None:
        self.ctx = ctx
        self.settings = settings
        self.sampler = Sampler(settings)
        self.metrics = EngineMetrics()
        self.spans: Ring[Span] = Ring("spans", settings.max_spans, _span_stamp, None)
        self.logs: Ring[dict[str, Any]] = Ring(
            "logs", settings.max_logs, _log_stamp, settings.logs_retention_s * 10**9
        )
        self.sdk_metrics: Ring[dict[str, Any]] = Ring(
            "metrics", settings.max_metrics, _metric_stamp, settings.metrics_retention_s * 10**9
        )
        self.exporter: OtlpExporter | None = None
        self.started_ns = time.time_ns()
        self.telemetry_frames = 0
        self.telemetry_rejected = 0
        self._log_sampler = random.Random()
        # The ``log`` trigger's intake (log_trigger.py), set while the module runs.
        self.log_sink: Callable[[dict[str, Any]], None] | None = None
        # Time-bucketed aggregates (rollups, alert windows) use this clock, Unix ns; tests
        # tie it to trio's clock.
        self.clock: Callable[[], int] = time.time_ns
        self.rollups = Rollups()
        # Per-second counts for alert windows; None unless an enabled rule needs them.
        self.windows: Windows | None = None

    # --- spans ------------------------------------------------------------------------------

    def start_span(
        self,
        name: str,
        *,
        kind: str,
        attributes: dict[str, Any],
        traceparent: str | None = None,
    ) -> Span:
        parent = tracing.parse_traceparent(traceparent) if traceparent is not None else None
        if parent is not None:
            trace_id, parent_id, sampled = parent
            if not self.settings.parent_based:
                sampled = self.sampler.root(name, self.settings.service_name)
        else:
            enclosing = current_span.get()
            if enclosing is not None:
                trace_id, parent_id = enclosing.trace_id, enclosing.span_id
                sampled = enclosing.sampled
            else:
                trace_id, parent_id = new_trace_id(), None
                sampled = self.sampler.root(name, self.settings.service_name)
        return Span(
            trace_id, new_span_id(), parent_id, name, kind, time.time_ns(), sampled, attributes
        )

    def end_span(self, span: Span) -> None:
        span.end_ns = time.time_ns()
        if span.status == "unset":
            span.status = "ok"
        if span.sampled:
            self.store_span(span)

    def store_span(self, span: Span) -> None:
        if self.settings.spans_in_memory:
            self.spans.append(span, span.end_ns)
        if self.exporter is not None and self.settings.spans_to_otlp:
            self.exporter.add_span(span)
        if self.settings.spans_console:
            console.info(
                "span %s %s %.3f ms %s trace=%s",
                span.name,
                span.status,
                (span.end_ns - span.start_ns) / 1e6,
                span.service_name or self.settings.service_name,
                span.trace_id,
            )

    # --- invocations (the router's hooks) -----------------------------------------------------

    def invocation_started(self, invocation: Invocation) -> None:
        caller = invocation.caller
        target = invocation.target
        attributes: dict[str, Any] = {
            "iii.function_id": invocation.function_id,
            "iii.invocation_id": invocation.id,
            "iii.caller": caller.worker_id if caller is not None else invocation.caller_module,
        }
        if target is not None:
            attributes["iii.worker_id"] = target.worker_id
        span = self.start_span(
            "handle_invocation " + invocation.function_id,
            kind="server",
            attributes=attributes,
            traceparent=invocation.traceparent,
        )
        invocation.span = span
        # The target continues the engine's span; the caller's baggage travels unchanged.
        invocation.traceparent = span.traceparent()

    def invocation_finished(self, invocation: Invocation) -> None:
        span = invocation.span
        assert span is not None
        outcome = invocation.outcome
        error = outcome.error if outcome is not None else None
        if error is not None:
            span.fail(f"{error.code}: {error.message}")
        elif outcome is None:
            span.fail("invocation_stopped")
        self.end_span(span)
        duration_ms = (span.end_ns - span.start_ns) / 1e6
        ok = span.status != "error"
        self.metrics.record(invocation.function_id, duration_ms, ok)
        outcome_name = "iii.invocations.success" if ok else "iii.invocations.error"
        now_s = self.clock() // 1_000_000_000
        rollups = self.rollups
        rollups.add("iii.invocations.total", 1, now_s)
        rollups.add(outcome_name, 1, now_s)
        rollups.add("iii.invocation.duration", duration_ms, now_s)
        windows = self.windows
        if windows is not None:
            windows.add("iii.invocations.total", now_s)
            windows.add(outcome_name, now_s)
            windows.duration(duration_ms, now_s)

    def _count(self, name: str) -> None:
        """One event of an engine counter, for rollups and alert windows."""
        now_s = self.clock() // 1_000_000_000
        self.rollups.add(name, 1, now_s)
        if self.windows is not None:
            self.windows.add(name, now_s)

    # --- workers ------------------------------------------------------------------------------

    def worker_event(self, event: str) -> None:
        if event == "worker_connected":
            self.metrics.spawns += 1
            self._count("iii.workers.spawns")
        elif event == "worker_disconnected":
            self.metrics.deaths += 1
            self._count("iii.workers.deaths")

    def call_deferred(self) -> None:
        self.metrics.deferred += 1
        self._count("iii.invocations.deferred")

    # --- logs ---------------------------------------------------------------------------------

    def store_log(self, record: dict[str, Any]) -> None:
        settings = self.settings
        if not settings.logs_enabled:
            return
        ratio = settings.logs_sampling_ratio
        if ratio < 1.0 and self._log_sampler.random() >= ratio:
            return
        now = time.time_ns()
        if settings.logs_in_memory:
            self.logs.append(record, now)
        if self.exporter is not None and settings.logs_to_otlp:
            self.exporter.add_log(record)
        if settings.logs_console:
            number = record["severity_number"]
            level = logging.ERROR if number >= 17 else _CONSOLE_LEVELS.get(number, logging.INFO)
            if console.isEnabledFor(level):
                service = record.get("service_name") or settings.service_name
                console.log(level, "[%s] %s", service, record["body"])
        if self.log_sink is not None:
            self.log_sink(record)

    def engine_log(self, severity: str, entry: LogEntry) -> dict[str, Any]:
        """A record for ``engine::log::<severity>`` (spec §9.3), stored and returned."""
        now = time.time_ns()
        enclosing = current_span.get()
        extra = entry.data
        attributes = dict(extra) if isinstance(extra, dict) else {}
        if extra is not None and not isinstance(extra, dict):
            attributes["log.data"] = extra
        service = entry.service_name
        record = {
            "timestamp_unix_nano": now,
            "observed_timestamp_unix_nano": now,
            "severity_number": SEVERITIES[severity],
            "severity_text": severity.upper(),
            "body": entry.message,
            "attributes": attributes,
            "trace_id": entry.trace_id or (enclosing.trace_id if enclosing else None),
            "span_id": entry.span_id or (enclosing.span_id if enclosing else None),
            "resource": dict(self.settings.resource),
            "service_name": service if isinstance(service, str) else self.settings.service_name,
            "instrumentation_scope_name": "iii_trio.engine",
            "instrumentation_scope_version": None,
        }
        self.store_log(record)
        return record

    # --- worker telemetry frames (spec/protocol.md §8, D1) -----------------------------------

    def telemetry(self, conn: Peer | None, frame: Telemetry) -> None:
        self.telemetry_frames += 1
        now = time.time_ns()
        try:
            body = orjson.loads(frame.body)
            if frame.kind == "OTLP":
                for span in ingest.spans(body):
                    self.store_span(span)
            elif frame.kind == "LOGS":
                for record in ingest.logs(body, now):
                    self.store_log(record)
            elif self.settings.metrics_enabled:
                self._store_metric_points(conn, ingest.metric_points(body, now), now)
        except (orjson.JSONDecodeError, ingest.BadTelemetry) as exc:
            self.telemetry_rejected += 1
            log.debug("telemetry frame %s rejected: %s", frame.kind, exc)

    def _store_metric_points(
        self, conn: Peer | None, points: list[dict[str, Any]], now: int
    ) -> None:
        latest: dict[str, dict[str, Any]] = {}
        now_s = self.clock() // 1_000_000_000
        for point in points:
            self.sdk_metrics.append(point, now)
            value = point["value"]
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.rollups.add(point["name"], value, now_s)
            worker_id = point["worker_id"] or (conn.worker_id if conn is not None else None)
            if worker_id is not None:
                latest.setdefault(worker_id, {})[point["name"]] = point["value"]
        at_ms = now // 1_000_000
        for worker_id, values in latest.items():
            self.ctx.record_worker_metrics(worker_id, values, at_ms=at_ms, limit=MAX_LATEST_METRICS)


def _span_stamp(span: Span) -> int:
    return span.end_ns
