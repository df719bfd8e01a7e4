"""``GET /metrics``: the engine's metrics in the Prometheus text format (version 0.0.4).

Engine counters and the duration histogram, live gauges (in-flight invocations, workers),
every loaded queue's depth, the telemetry stores' sizes and drops, and the latest numeric
values each worker reported in ``MTRC`` frames.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from iii_trio.runtime.modules.observability.observer import EngineObserver

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_NAME_JUNK = re.compile(r"[^a-zA-Z0-9_:]")


def metric_name(name: str) -> str:
    cleaned = _NAME_JUNK.sub("_", name)
    return cleaned if cleaned and not cleaned[0].isdigit() else "_" + cleaned


def _label_value(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value)) if isinstance(value, float) else str(value)


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: set[str] = set()

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.names.add(name)
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: Any) -> None:
        if labels:
            inner = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{inner}}} {_number(value)}")
        else:
            self.lines.append(f"{name} {_number(value)}")


def render(observer: EngineObserver) -> bytes:
    ctx = observer.ctx
    gauges = ctx.engine_gauges()
    metrics = observer.metrics
    out = _Text()
    out.family("iii_invocations_total", "counter", "Invocations finished, by outcome")
    out.sample("iii_invocations_total", metrics.success, status="success")
    out.sample("iii_invocations_total", metrics.error, status="error")
    out.family("iii_invocations_deferred_total", "counter", "Calls handed to a queue")
    out.sample("iii_invocations_deferred_total", metrics.deferred)
    out.family("iii_invocations_in_flight", "gauge", "Live invocations")
    out.sample("iii_invocations_in_flight", gauges.invocations_in_flight)
    out.family("iii_function_invocations_total", "counter", "Invocations finished per function")
    for function_id, stats in metrics.by_function.items():
        ok = stats.count - stats.errors
        out.sample("iii_function_invocations_total", ok, function_id=function_id, status="success")
        out.sample(
            "iii_function_invocations_total", stats.errors, function_id=function_id, status="error"
        )
    name = "iii_invocation_duration_seconds"
    out.family(name, "histogram", "Invocation duration, routed to finished")
    for le, count in metrics.cumulative_buckets():
        out.sample(f"{name}_bucket", count, le=le)
    out.sample(f"{name}_sum", metrics.overall.sum_ms / 1000)
    out.sample(f"{name}_count", metrics.overall.count)
    out.family("iii_workers_active", "gauge", "Open worker connections")
    out.sample("iii_workers_active", gauges.workers_connected)
    out.family("iii_workers_spawns_total", "counter", "Worker connections opened")
    out.sample("iii_workers_spawns_total", metrics.spawns)
    out.family("iii_workers_deaths_total", "counter", "Worker connections closed")
    out.sample("iii_workers_deaths_total", metrics.deaths)
    for family in ctx.module_gauges():  # the queue module's depths, ...
        out.family(family.name, "gauge", family.help)
        for labels, value in family.samples():
            out.sample(family.name, value, **labels)
    rings = (observer.logs, observer.spans, observer.sdk_metrics)
    out.family("iii_telemetry_stored", "gauge", "Items held in the in-memory stores")
    for ring in rings:
        out.sample("iii_telemetry_stored", len(ring), store=ring.name)
    out.family("iii_telemetry_dropped_total", "counter", "Items pushed out of a full store")
    for ring in rings:
        out.sample("iii_telemetry_dropped_total", ring.dropped, store=ring.name)
    _worker_gauges(out, ctx.worker_metrics())
    return ("\n".join(out.lines) + "\n").encode()


def _worker_gauges(out: _Text, workers: Iterable[tuple[str, Any]]) -> None:
    """Each worker's latest MTRC values, one gauge family per metric name."""
    families: dict[str, list[tuple[str, float]]] = {}
    for worker_id, latest in workers:
        if not isinstance(latest, dict):
            continue
        for key, value in latest.items():
            if (
                key != "timestamp"
                and isinstance(value, int | float)
                and not isinstance(value, bool)
            ):
                families.setdefault(metric_name(key), []).append((worker_id, value))
    for name, samples in sorted(families.items()):
        if name in out.names:  # a worker's metric cannot shadow the engine's own
            continue
        out.family(name, "gauge", "Latest value reported by the worker")
        for worker_id, value in samples:
            out.sample(name, value, worker_id=worker_id)
