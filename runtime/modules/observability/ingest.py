"""OTLP-JSON bodies of worker telemetry frames (spec/protocol.md §8) as stored records.

The SDKs send ``resourceSpans`` / ``resourceLogs`` / ``resourceMetrics`` with lower-case
hex ids (base64 ids, as the protobuf JSON mapping writes them, are converted). Anything
that does not have the expected shape raises :class:`BadTelemetry`; the caller counts it
and carries on.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Any

from iii_trio.runtime.calls.tracing import Span

SPAN_KINDS = {0: "internal", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
STATUS_CODES = {0: "unset", 1: "ok", 2: "error"}


class BadTelemetry(ValueError):
    pass


def any_value(value: Any) -> Any:
    """An OTLP ``AnyValue`` object as a plain value."""
    if not isinstance(value, dict):
        return value
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        try:
            return int(value["intValue"])
        except (TypeError, ValueError):
            return value["intValue"]
    if "doubleValue" in value:
        return value["doubleValue"]
    if "boolValue" in value:
        return value["boolValue"]
    if "arrayValue" in value:
        return [any_value(v) for v in (value["arrayValue"] or {}).get("values") or []]
    if "kvlistValue" in value:
        return attributes((value["kvlistValue"] or {}).get("values"))
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def attributes(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    return {
        str(item["key"]): any_value(item.get("value"))
        for item in items
        if isinstance(item, dict) and "key" in item
    }


def hex_id(value: Any, digits: int) -> str | None:
    """A trace (32) or span (16) id as lower-case hex; None when absent or all zero."""
    if not isinstance(value, str) or not value:
        return None
    text = value.lower()
    if len(text) != digits:
        try:
            text = base64.b64decode(value, validate=True).hex()
        except (binascii.Error, ValueError):
            return None
        if len(text) != digits:
            return None
    try:
        return text if int(text, 16) else None
    except ValueError:
        return None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _sections(body: Any, resource_key: str, scope_key: str) -> Iterator[tuple[dict[str, Any], Any]]:
    """(resource attributes, scope section) pairs of an OTLP export request."""
    if not isinstance(body, dict) or not isinstance(body.get(resource_key), list):
        raise BadTelemetry(f"expected an object with a {resource_key} list")
    for resource_section in body[resource_key]:
        if not isinstance(resource_section, dict):
            raise BadTelemetry(f"{resource_key} items must be objects")
        resource = attributes((resource_section.get("resource") or {}).get("attributes"))
        for scope_section in resource_section.get(scope_key) or []:
            if isinstance(scope_section, dict):
                yield resource, scope_section


def spans(body: Any) -> list[Span]:
    out = []
    for resource, section in _sections(body, "resourceSpans", "scopeSpans"):
        service = resource.get("service.name")
        for raw in section.get("spans") or []:
            if not isinstance(raw, dict):
                continue
            trace_id = hex_id(raw.get("traceId"), 32)
            span_id = hex_id(raw.get("spanId"), 16)
            if trace_id is None or span_id is None:
                continue
            status = raw.get("status") or {}
            span = Span(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=hex_id(raw.get("parentSpanId"), 16),
                name=str(raw.get("name") or ""),
                kind=SPAN_KINDS.get(_int(raw.get("kind")), "internal"),
                start_ns=_int(raw.get("startTimeUnixNano")),
                sampled=True,
                attributes=attributes(raw.get("attributes")),
                end_ns=_int(raw.get("endTimeUnixNano")),
                status=STATUS_CODES.get(_int(status.get("code")), "unset"),
                status_message=status.get("message") or None,
                service_name=str(service) if service is not None else "unknown",
            )
            events = raw.get("events")
            if isinstance(events, list) and events:
                span.events = [
                    {
                        "name": e.get("name"),
                        "timestamp_unix_nano": _int(e.get("timeUnixNano")),
                        "attributes": attributes(e.get("attributes")),
                    }
                    for e in events
                    if isinstance(e, dict)
                ]
            out.append(span)
    return out


def logs(body: Any, observed_ns: int) -> list[dict[str, Any]]:
    """Log records in the stored shape of spec/modules.md §9.3."""
    out = []
    for resource, section in _sections(body, "resourceLogs", "scopeLogs"):
        scope = section.get("scope") or {}
        record_attributes: dict[str, Any]
        for raw in section.get("logRecords") or []:
            if not isinstance(raw, dict):
                continue
            record_attributes = attributes(raw.get("attributes"))
            service = resource.get("service.name") or record_attributes.get("service.name")
            body_value = any_value(raw.get("body"))
            timestamp = _int(raw.get("timeUnixNano")) or _int(raw.get("observedTimeUnixNano"))
            out.append(
                {
                    "timestamp_unix_nano": timestamp or observed_ns,
                    "observed_timestamp_unix_nano": _int(raw.get("observedTimeUnixNano"))
                    or observed_ns,
                    "severity_number": _int(raw.get("severityNumber")),
                    "severity_text": str(raw.get("severityText") or ""),
                    "body": body_value if isinstance(body_value, str) else str(body_value),
                    "attributes": record_attributes,
                    "trace_id": hex_id(raw.get("traceId"), 32),
                    "span_id": hex_id(raw.get("spanId"), 16),
                    "resource": resource,
                    "service_name": str(service) if service else None,
                    "instrumentation_scope_name": scope.get("name") or None,
                    "instrumentation_scope_version": scope.get("version") or None,
                }
            )
    return out


def metric_points(body: Any, observed_ns: int) -> list[dict[str, Any]]:
    """One row per data point: ``{name, type, unit, value, attributes, timestamp_unix_nano,
    service_name, worker_id}``; a histogram's value is ``{count, sum, min, max}``."""
    out = []
    for resource, section in _sections(body, "resourceMetrics", "scopeMetrics"):
        service = resource.get("service.name")
        for metric in section.get("metrics") or []:
            if not isinstance(metric, dict):
                continue
            for kind in ("gauge", "sum", "histogram"):
                data = metric.get(kind)
                if isinstance(data, dict):
                    break
            else:
                continue
            for point in data.get("dataPoints") or []:
                if not isinstance(point, dict):
                    continue
                point_attributes = attributes(point.get("attributes"))
                value: Any
                if kind == "histogram":
                    value = {
                        "count": _int(point.get("count")),
                        "sum": point.get("sum"),
                        "min": point.get("min"),
                        "max": point.get("max"),
                    }
                elif "asDouble" in point:
                    value = point["asDouble"]
                else:
                    value = _int(point.get("asInt"))
                worker_id = point_attributes.get("worker.id") or resource.get("worker.id")
                out.append(
                    {
                        "name": str(metric.get("name") or ""),
                        "type": kind,
                        "unit": metric.get("unit") or None,
                        "value": value,
                        "attributes": point_attributes,
                        "timestamp_unix_nano": _int(point.get("timeUnixNano")) or observed_ns,
                        "service_name": str(service) if service else None,
                        "worker_id": str(worker_id) if worker_id else None,
                    }
                )
    return out
