"""OTLP export over HTTP with JSON bodies (OTLP/HTTP, ``/v1/traces``, ``/v1/logs``,
``/v1/metrics`` under ``endpoint``).

There is no gRPC client in this build, so ``endpoint`` must be a collector's OTLP/HTTP
receiver (port 4318 by convention, not gRPC's 4317). Spans and logs wait in bounded rings
(their own cap and drop counter) and leave in batches of at most ``batch_size`` every
``flush_interval`` seconds, or as soon as a full batch is waiting. A batch the collector
refuses or cannot take is dropped and counted: export never holds more than the rings.
Engine metrics are sent as one snapshot per interval when ``metrics_exporter: otlp``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
import trio

from iii_trio.runtime.calls.tracing import Span
from iii_trio.runtime.modules.observability.http_client import REQUEST_ERRORS, Target, post_json
from iii_trio.runtime.modules.observability.stores import Ring

if TYPE_CHECKING:
    from iii_trio.runtime.modules.observability.observer import EngineObserver

log = logging.getLogger("iii_trio.otel.export")

EXPORT_QUEUE_CAPACITY = 4096  # per signal
REQUEST_TIMEOUT_S = 10.0
_KINDS = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
_STATUS = {"unset": 0, "ok": 1, "error": 2}


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": _attributes(value)}}
    return {"stringValue": str(value)}


def _attributes(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": str(k), "value": _value(v)} for k, v in values.items() if v is not None]


def _resource(service: str, engine_resource: dict[str, str]) -> dict[str, Any]:
    """The engine's own resource (name, version, namespace) for its service; only the
    name for a worker's."""
    if service == engine_resource["service.name"]:
        return {"attributes": _attributes(engine_resource)}
    return {"attributes": _attributes({"service.name": service})}


def _grouped(items: list[Any], service_of: Callable[[Any], str]) -> dict[str, list[Any]]:
    groups: dict[str, list[Any]] = {}
    for item in items:
        groups.setdefault(service_of(item), []).append(item)
    return groups


def spans_body(spans: list[Span], engine_resource: dict[str, str]) -> bytes:
    default_service = engine_resource["service.name"]
    resource_spans = []
    for service, group in _grouped(spans, lambda s: s.service_name or default_service).items():
        rows = []
        for span in group:
            row: dict[str, Any] = {
                "traceId": span.trace_id,
                "spanId": span.span_id,
                "name": span.name,
                "kind": _KINDS.get(span.kind, 1),
                "startTimeUnixNano": str(span.start_ns),
                "endTimeUnixNano": str(span.end_ns),
                "attributes": _attributes(span.attributes),
                "status": {
                    "code": _STATUS.get(span.status, 0),
                    "message": span.status_message or "",
                },
            }
            if span.parent_span_id:
                row["parentSpanId"] = span.parent_span_id
            rows.append(row)
        resource_spans.append(
            {
                "resource": _resource(service, engine_resource),
                "scopeSpans": [{"scope": {"name": "iii-trio"}, "spans": rows}],
            }
        )
    return orjson.dumps({"resourceSpans": resource_spans})


def logs_body(records: list[dict[str, Any]], engine_resource: dict[str, str]) -> bytes:
    default_service = engine_resource["service.name"]
    resource_logs = []
    by_service = _grouped(records, lambda r: r.get("service_name") or default_service)
    for service, group in by_service.items():
        rows = []
        for record in group:
            row: dict[str, Any] = {
                "timeUnixNano": str(record["timestamp_unix_nano"]),
                "observedTimeUnixNano": str(record["observed_timestamp_unix_nano"]),
                "severityNumber": record["severity_number"],
                "severityText": record["severity_text"],
                "body": {"stringValue": record["body"]},
                "attributes": _attributes(record["attributes"]),
            }
            if record.get("trace_id"):
                row["traceId"] = record["trace_id"]
            if record.get("span_id"):
                row["spanId"] = record["span_id"]
            rows.append(row)
        resource_logs.append(
            {
                "resource": _resource(service, engine_resource),
                "scopeLogs": [{"scope": {"name": "iii-trio"}, "logRecords": rows}],
            }
        )
    return orjson.dumps({"resourceLogs": resource_logs})


def metrics_body(observer: EngineObserver, now_ns: int) -> bytes:
    metrics = observer.metrics
    start = str(observer.started_ns)

    def counter(name: str, value: int) -> dict[str, Any]:
        point = {"startTimeUnixNano": start, "timeUnixNano": str(now_ns), "asInt": str(value)}
        return {
            "name": name,
            "sum": {"dataPoints": [point], "aggregationTemporality": 2, "isMonotonic": True},
        }

    def gauge(name: str, value: int) -> dict[str, Any]:
        return {
            "name": name,
            "gauge": {"dataPoints": [{"timeUnixNano": str(now_ns), "asInt": str(value)}]},
        }

    rows = [
        counter("iii.invocations.total", metrics.total),
        counter("iii.invocations.success", metrics.success),
        counter("iii.invocations.error", metrics.error),
        counter("iii.invocations.deferred", metrics.deferred),
        counter("iii.workers.spawns", metrics.spawns),
        counter("iii.workers.deaths", metrics.deaths),
        gauge("iii.workers.active", observer.ctx.engine_gauges().workers_connected),
    ]
    return orjson.dumps(
        {
            "resourceMetrics": [
                {
                    "resource": _resource(
                        observer.settings.service_name, observer.settings.resource
                    ),
                    "scopeMetrics": [{"scope": {"name": "iii-trio"}, "metrics": rows}],
                }
            ]
        }
    )


class OtlpExporter:
    def __init__(
        self,
        observer: EngineObserver,
        endpoint: str,
        *,
        batch_size: int,
        flush_interval_s: float,
        metrics: bool,
    ) -> None:
        self.observer = observer
        try:
            self.target = Target.parse(endpoint)
        except ValueError as exc:
            raise ValueError(f"OTLP endpoint {exc}") from None
        self.base_path = urlsplit(self.target.url()).path.rstrip("/")
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.metrics = metrics
        self.spans: Ring[Span] = Ring("export.spans", EXPORT_QUEUE_CAPACITY, _end_ns, None)
        self.logs: Ring[dict[str, Any]] = Ring("export.logs", EXPORT_QUEUE_CAPACITY, _log_ns, None)
        self._batch_ready = trio.Event()
        self.sent = {"traces": 0, "logs": 0, "metrics": 0}
        self.failed_batches = 0
        self.last_error: str | None = None
        if self.target.port == 4317:
            log.warning(
                "OTLP endpoint %s is gRPC's port: this build exports OTLP/HTTP JSON (use 4318)",
                endpoint,
            )

    def stats(self) -> dict[str, Any]:
        return {
            "endpoint": self.target.url().rstrip("/"),
            "sent": dict(self.sent),
            "failed_batches": self.failed_batches,
            "last_error": self.last_error,
            "queued": {"spans": self.spans.stats(), "logs": self.logs.stats()},
        }

    def add_span(self, span: Span) -> None:
        self.spans.append(span, span.end_ns)
        if len(self.spans) >= self.batch_size:
            self._batch_ready.set()

    def add_log(self, record: dict[str, Any]) -> None:
        self.logs.append(record, record["timestamp_unix_nano"])
        if len(self.logs) >= self.batch_size:
            self._batch_ready.set()

    async def run(self) -> None:
        while True:
            with trio.move_on_after(self.flush_interval_s):
                await self._batch_ready.wait()
            self._batch_ready = trio.Event()
            await self.flush()

    async def flush(self) -> None:
        resource = self.observer.settings.resource
        while self.spans.items:
            batch = _take(self.spans, self.batch_size)
            await self._post("traces", spans_body(batch, resource), len(batch))
        while self.logs.items:
            batch = _take(self.logs, self.batch_size)
            await self._post("logs", logs_body(batch, resource), len(batch))
        if self.metrics:
            await self._post("metrics", metrics_body(self.observer, time.time_ns()), 1)

    async def _post(self, signal: str, body: bytes, count: int) -> None:
        try:
            with trio.fail_after(REQUEST_TIMEOUT_S):
                status = await post_json(self.target, f"{self.base_path}/v1/{signal}", body)
        except REQUEST_ERRORS as exc:
            self._failed(signal, f"{type(exc).__name__}: {exc}")
            return
        if 200 <= status < 300:
            self.sent[signal] += count
        else:
            self._failed(signal, f"HTTP {status}")

    def _failed(self, signal: str, reason: str) -> None:
        if self.last_error is None or self.failed_batches % 100 == 0:
            log.warning("OTLP export of %s failed: %s (batch dropped)", signal, reason)
        self.failed_batches += 1
        self.last_error = reason


def _take(ring: Ring[Any], count: int) -> list[Any]:
    items = ring.items
    return [items.popleft() for _ in range(min(count, len(items)))]


def _end_ns(span: Span) -> int:
    return span.end_ns


def _log_ns(record: dict[str, Any]) -> int:
    stamp: int = record["timestamp_unix_nano"]
    return stamp
