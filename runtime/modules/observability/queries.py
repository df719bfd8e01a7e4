"""The module's query functions (spec/modules.md §9.3): logs, traces, metrics, health.

Time bounds (``start_time`` / ``end_time``) are Unix milliseconds; values above 10^15 are
read as nanoseconds. Lists are newest first unless ``sort_order`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from iii_trio.runtime.calls import inputs
from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.clock import now_ms
from iii_trio.runtime.modules.observability.inputs import (
    LogEntry,
    LogQuery,
    MetricsQuery,
    RollupQuery,
    TraceQuery,
    TraceTreeQuery,
)
from iii_trio.runtime.modules.observability.observer import SEVERITIES
from iii_trio.runtime.modules.observability.rollups import LEVELS

if TYPE_CHECKING:
    from iii_trio.runtime.calls.tracing import Span
    from iii_trio.runtime.modules.observability.alerts import AlertManager
    from iii_trio.runtime.modules.observability.observer import EngineObserver

MAX_LIMIT = 10_000


def _echo(data: Any) -> dict[str, Any]:
    """A checked query input as it is echoed back (``query``): without the engine-injected
    caller id; ``{}`` for ``null``."""
    if data is None:
        return {}
    return {k: v for k, v in data.items() if k != "_caller_worker_id"}


def _as_ns(value: float | None) -> int | None:
    if value is None:
        return None
    return int(value) if value > 10**15 else int(value * 1_000_000)


def span_row(span: Span, default_service: str) -> dict[str, Any]:
    row: dict[str, Any] = {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id,
        "name": span.name,
        "kind": span.kind,
        "start_time_unix_nano": span.start_ns,
        "end_time_unix_nano": span.end_ns,
        "duration_ms": (span.end_ns - span.start_ns) / 1e6,
        "status": span.status,
        "status_message": span.status_message,
        "attributes": span.attributes,
        "service_name": span.service_name or default_service,
    }
    if span.events:
        row["events"] = span.events
    return row


class Queries:
    def __init__(self, observer: EngineObserver, alerts: AlertManager) -> None:
        self.observer = observer
        self.alerts = alerts

    # --- logs -------------------------------------------------------------------------------

    def log_function(self, severity: str) -> Any:
        function_id = f"engine::log::{severity}"

        async def handler(data: Any, ctx: Any) -> None:
            self.observer.engine_log(severity, inputs.structure(function_id, data, LogEntry))

        return handler

    async def logs_list(self, data: Any, ctx: Any) -> dict[str, Any]:
        query = inputs.structure("engine::logs::list", data, LogQuery)
        start, end = _as_ns(query.start_time), _as_ns(query.end_time)
        trace_id, span_id = query.trace_id, query.span_id
        severity_min = query.severity_min
        if isinstance(severity_min, str):
            severity_min = SEVERITIES.get(severity_min.lower())
        severity_text = query.severity_text
        offset, limit = query.offset, min(query.limit, MAX_LIMIT)
        matches = []
        for record in reversed(self.observer.logs.items):
            stamp = record["timestamp_unix_nano"]
            if (start is not None and stamp < start) or (end is not None and stamp > end):
                continue
            if trace_id and record["trace_id"] != trace_id:
                continue
            if span_id and record["span_id"] != span_id:
                continue
            if severity_min and record["severity_number"] < severity_min:
                continue
            if severity_text and record["severity_text"].lower() != str(severity_text).lower():
                continue
            matches.append(record)
        return {
            "logs": matches[offset : offset + limit],
            "total": len(matches),
            "query": _echo(data),
            "timestamp": now_ms(),
        }

    async def logs_clear(self, data: Any, ctx: Any) -> dict[str, Any]:
        self.observer.logs.clear()
        return {"success": True}

    # --- traces -----------------------------------------------------------------------------

    def _spans_in_memory(self) -> None:
        if not self.observer.settings.spans_in_memory:
            raise InvocationError(
                "memory_exporter_not_enabled",
                "spans are not kept in memory: set exporter to memory or both",
            )

    async def traces_list(self, data: Any, ctx: Any) -> dict[str, Any]:
        self._spans_in_memory()
        query = inputs.structure("engine::traces::list", data, TraceQuery)
        offset, limit = query.offset, min(query.limit, MAX_LIMIT)
        spans = list(self.observer.spans)
        if not query.search_all_spans:
            present = {span.span_id for span in spans}
            spans = [
                s for s in spans if s.parent_span_id is None or s.parent_span_id not in present
            ]
        matches = [s for s in spans if self._span_matches(s, query)]
        keys = {
            "start_time": lambda s: s.start_ns,
            "duration": lambda s: s.end_ns - s.start_ns,
            "name": lambda s: s.name,
        }
        matches.sort(key=keys[query.sort_by], reverse=query.sort_order != "asc")
        default_service = self.observer.settings.service_name
        return {
            "spans": [span_row(s, default_service) for s in matches[offset : offset + limit]],
            "total": len(matches),
            "offset": offset,
            "limit": limit,
        }

    def _span_matches(self, span: Span, query: TraceQuery) -> bool:
        if query.trace_id and span.trace_id != query.trace_id:
            return False
        service = span.service_name or self.observer.settings.service_name
        if query.service_name and service != query.service_name:
            return False
        if query.name and str(query.name).lower() not in span.name.lower():
            return False
        if query.status and span.status != str(query.status).lower():
            return False
        duration_ms = (span.end_ns - span.start_ns) / 1e6
        if query.min_duration_ms is not None and duration_ms < query.min_duration_ms:
            return False
        if query.max_duration_ms is not None and duration_ms > query.max_duration_ms:
            return False
        start, end = _as_ns(query.start_time), _as_ns(query.end_time)
        if (start is not None and span.start_ns < start) or (
            end is not None and span.start_ns > end
        ):
            return False
        for key, value in query.attributes or []:
            if str(span.attributes.get(key)) != str(value):
                return False
        function_id = span.attributes.get("iii.function_id")
        internal = isinstance(function_id, str) and function_id.startswith("engine::")
        return not internal or bool(query.include_internal)

    async def traces_tree(self, data: Any, ctx: Any) -> dict[str, Any]:
        self._spans_in_memory()
        trace_id = inputs.structure("engine::traces::tree", data, TraceTreeQuery).trace_id
        spans = sorted(
            (s for s in self.observer.spans if s.trace_id == trace_id), key=lambda s: s.start_ns
        )
        return {"roots": build_tree(spans, self.observer.settings.service_name)}

    async def traces_clear(self, data: Any, ctx: Any) -> dict[str, Any]:
        self._spans_in_memory()
        self.observer.spans.clear()
        return {"success": True}

    # --- metrics, health, sampling ----------------------------------------------------------

    async def metrics_list(self, data: Any, ctx: Any) -> dict[str, Any]:
        query = inputs.structure("engine::metrics::list", data, MetricsQuery)
        start, end = _as_ns(query.start_time), _as_ns(query.end_time)
        name = query.metric_name
        metrics = self.observer.metrics
        overall = metrics.overall.row()
        sdk = [
            point
            for point in self.observer.sdk_metrics
            if (start is None or point["timestamp_unix_nano"] >= start)
            and (end is None or point["timestamp_unix_nano"] <= end)
            and (not name or point["name"] == name)
        ]
        interval = query.aggregate_interval
        gauges = self.observer.ctx.engine_gauges()
        result: dict[str, Any] = {
            "engine_metrics": {
                "invocations": {
                    "total": metrics.total,
                    "success": metrics.success,
                    "error": metrics.error,
                    "deferred": metrics.deferred,
                    "in_flight": gauges.invocations_in_flight,
                    "by_function": {
                        function_id: stats.row()
                        for function_id, stats in metrics.by_function.items()
                    },
                },
                "workers": {
                    "spawns": metrics.spawns,
                    "deaths": metrics.deaths,
                    "active": gauges.workers_connected,
                },
                "performance": {
                    "avg_duration_ms": overall["avg_duration_ms"],
                    "min_duration_ms": overall["min_duration_ms"],
                    "max_duration_ms": overall["max_duration_ms"],
                    "duration_buckets": [
                        {"le": le, "count": count} for le, count in metrics.cumulative_buckets()
                    ],
                },
            },
            "sdk_metrics": sdk,
            "timestamp": now_ms(),
        }
        if interval is not None:
            result["aggregated_metrics"] = aggregate(sdk, interval)
        if echo := _echo(data):
            result["query"] = echo
        return result

    # --- alerts and rollups -----------------------------------------------------------------

    def _alerts_result(self) -> dict[str, Any]:
        alerts = self.alerts
        return {
            "alerts": alerts.rows(),
            "firing_count": alerts.firing_count(),
            "timestamp": now_ms(),
        }

    async def alerts_list(self, data: Any, ctx: Any) -> dict[str, Any]:
        return self._alerts_result()

    async def alerts_evaluate(self, data: Any, ctx: Any) -> dict[str, Any]:
        triggered = self.alerts.evaluate()
        return {**self._alerts_result(), "evaluated": True, "triggered": triggered}

    async def rollups_list(self, data: Any, ctx: Any) -> dict[str, Any]:
        query = inputs.structure("engine::rollups::list", data, RollupQuery)
        level, name = query.level, query.metric_name
        start, end = _as_ns(query.start_time), _as_ns(query.end_time)
        rollups = self.observer.rollups
        rows = rollups.rows(
            level,
            start / 1e9 if start is not None else None,
            end / 1e9 if end is not None else None,
            name,
        )
        return {
            "rollups": rows,
            "level": level,
            "interval_seconds": LEVELS[level][0],
            "query": _echo(data),
            "timestamp": now_ms(),
        }

    async def health_check(self, data: Any, ctx: Any) -> dict[str, Any]:
        observer = self.observer
        settings = observer.settings

        def component(enabled: bool, details: dict[str, Any]) -> dict[str, Any]:
            return {"status": "healthy" if enabled else "disabled", "details": details}

        exporter = observer.exporter
        return {
            "status": "healthy",
            "components": {
                "otel": component(
                    True,
                    {
                        "service_name": settings.service_name,
                        "telemetry_frames": observer.telemetry_frames,
                        "telemetry_rejected": observer.telemetry_rejected,
                        "otlp_export": exporter.stats() if exporter is not None else None,
                    },
                ),
                "metrics": component(settings.metrics_enabled, observer.sdk_metrics.stats()),
                "logs": component(settings.logs_enabled, observer.logs.stats()),
                "spans": component(settings.spans_in_memory, observer.spans.stats()),
            },
            "timestamp": now_ms(),
            "version": _version(),
        }

    async def sampling_rules(self, data: Any, ctx: Any) -> dict[str, Any]:
        settings = self.observer.settings
        return {
            "traces": {
                "default_ratio": settings.sampling_default,
                "rules": [
                    {"operation": operation, "service": service, "rate": rate}
                    for operation, service, rate in settings.rules
                ],
                "parent_based": settings.parent_based,
            },
            "logs": {"sampling_ratio": settings.logs_sampling_ratio},
            "timestamp": now_ms(),
        }


def aggregate(points: list[dict[str, Any]], interval_s: int) -> list[dict[str, Any]]:
    """Numeric SDK metric points grouped by name and ``interval_s``-second bucket (by the
    point's timestamp): count, sum, min, max, avg; oldest bucket first."""
    width = interval_s * 1_000_000_000
    groups: dict[tuple[str, int], list[float]] = {}
    for point in points:
        value = point["value"]
        if isinstance(value, dict):
            value = value.get("sum")
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        start = point["timestamp_unix_nano"] // width * width
        groups.setdefault((point["name"], start), []).append(float(value))
    return [
        {
            "metric_name": name,
            "interval_seconds": interval_s,
            "start_time": start // 1_000_000,
            "count": len(values),
            "sum": sum(values),
            "min": min(values),
            "max": max(values),
            "avg": sum(values) / len(values),
        }
        for (name, start), values in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]


def build_tree(spans: Iterable[Span], default_service: str) -> list[dict[str, Any]]:
    """Spans nested by parent; spans whose parent is not among them are roots."""
    rows = {}
    for span in spans:
        row = span_row(span, default_service)
        row["children"] = []
        rows[span.span_id] = row
    roots: list[dict[str, Any]] = []
    for row in rows.values():
        parent = rows.get(row["parent_span_id"]) if row["parent_span_id"] else None
        (parent["children"] if parent is not None else roots).append(row)
    return roots


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("iii-trio")
    except PackageNotFoundError:
        return "unknown"
