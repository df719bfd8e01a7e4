"""The inputs of the observability functions (spec/modules.md §9.3), declared for
:mod:`iii_trio.runtime.calls.inputs`.

The queries take ``null`` as ``{}``. Fields the queries compare as sent (ids, names,
``status``) are ``Any``: they were never checked, and a filter that matches nothing is
their answer."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from iii_trio.runtime.calls import inputs
from iii_trio.runtime.modules.observability.rollups import LEVELS

DEFAULT_LIMIT = 100

_UNIX_MS = "`{key}` must be a number (Unix ms)"
_NON_NEGATIVE = "`{key}` must be a non-negative integer"
_SORT_BY = "`sort_by` is start_time, duration or name"
SORT_KEYS = ("start_time", "duration", "name")


def _unix_ms() -> Any:
    return inputs.field(default=None, wrong=_UNIX_MS)


def _non_negative(default: int) -> Any:
    return inputs.field(
        default=default, wrong=_NON_NEGATIVE, checks=[(lambda n: n >= 0, _NON_NEGATIVE)]
    )


@attrs.frozen(kw_only=True)
class Query:
    """What the queries share: ``null`` is ``{}``."""

    RULES: ClassVar[inputs.Rules] = inputs.Rules(accepts="object_or_null")


@attrs.frozen(kw_only=True)
class LogEntry(Query):
    """``engine::log::<severity>``; ``data`` becomes the record's attributes."""

    message: str = inputs.field(
        missing="`message` (a string) is required", wrong="`message` (a string) is required"
    )
    data: Any = None
    trace_id: Any = None
    span_id: Any = None
    service_name: Any = None


@attrs.frozen(kw_only=True)
class LogQuery(Query):
    """``engine::logs::list``; ``severity_min`` is a number or a level name."""

    start_time: float | None = _unix_ms()
    end_time: float | None = _unix_ms()
    trace_id: Any = None
    span_id: Any = None
    severity_min: int | str | None = inputs.field(
        default=None, wrong="`severity_min` must be a number or a level name"
    )
    severity_text: Any = None
    offset: int = _non_negative(0)
    limit: int = _non_negative(DEFAULT_LIMIT)


@attrs.frozen(kw_only=True)
class TraceQuery(Query):
    """``engine::traces::list``."""

    offset: int = _non_negative(0)
    limit: int = _non_negative(DEFAULT_LIMIT)
    search_all_spans: Any = None
    trace_id: Any = None
    service_name: Any = None
    name: Any = None
    status: Any = None
    min_duration_ms: float | None = None
    max_duration_ms: float | None = None
    start_time: float | None = _unix_ms()
    end_time: float | None = _unix_ms()
    attributes: list[list[Any]] | None = inputs.field(
        default=None,
        wrong="`attributes` is a list of [key, value] pairs",
        checks=[
            (
                lambda pairs: all(len(pair) == 2 for pair in pairs),
                "`attributes` is a list of [key, value] pairs",
            )
        ],
    )
    include_internal: Any = None
    sort_by: str = inputs.field(
        default="start_time",
        wrong=_SORT_BY,
        blank_is_missing=True,
        checks=[(lambda key: key in SORT_KEYS, _SORT_BY)],
    )
    sort_order: Any = "desc"


@attrs.frozen(kw_only=True)
class TraceTreeQuery(Query):
    """``engine::traces::tree``."""

    trace_id: str = inputs.field(
        missing="`trace_id` is required", wrong="`trace_id` is required", blank_is_missing=True
    )


@attrs.frozen(kw_only=True)
class MetricsQuery(Query):
    """``engine::metrics::list``; ``aggregate_interval`` in seconds."""

    start_time: float | None = _unix_ms()
    end_time: float | None = _unix_ms()
    metric_name: Any = None
    aggregate_interval: int | None = inputs.field(
        default=None,
        wrong="`aggregate_interval` must be a positive integer (s)",
        checks=[(lambda s: s > 0, "`aggregate_interval` must be a positive integer (s)")],
    )


@attrs.frozen(kw_only=True)
class RollupQuery(Query):
    """``engine::rollups::list``."""

    level: int = inputs.field(
        default=0,
        wrong=_NON_NEGATIVE,
        checks=[
            (lambda n: n >= 0, _NON_NEGATIVE),
            (lambda n: n < len(LEVELS), "`level` is 0 (1 min), 1 (5 min) or 2 (1 h)"),
        ],
    )
    start_time: float | None = _unix_ms()
    end_time: float | None = _unix_ms()
    metric_name: str | None = None


_BAGGAGE_STRING = "missing field `{key}` (a string)"


@attrs.frozen(kw_only=True)
class BaggageKey:
    """``engine::baggage::get``."""

    RULES: ClassVar[inputs.Rules] = inputs.Rules(missing=_BAGGAGE_STRING, wrong=_BAGGAGE_STRING)
    key: str


@attrs.frozen(kw_only=True)
class BaggageEntry(BaggageKey):
    """``engine::baggage::set``."""

    value: str


@attrs.frozen(kw_only=True)
class NoInput(Query):
    """``engine::baggage::get_all``: an object or ``null``."""
