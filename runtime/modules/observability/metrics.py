"""The engine's own metrics: fixed-size counters and one duration histogram.

``iii.invocations.total|success|error|deferred``, ``iii.invocation.duration`` (all and per
function), ``iii.workers.spawns|deaths`` (``active`` is read from the live connections).
Per-function rows are bounded: past :data:`MAX_FUNCTIONS` distinct ids, further ones are
counted together under :data:`OTHER`.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

MAX_FUNCTIONS = 1000
OTHER = "(other)"
# Upper bounds of the duration histogram's buckets, in seconds (Prometheus ``le``).
BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class FunctionStats:
    __slots__ = ("count", "errors", "max_ms", "min_ms", "sum_ms")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.sum_ms = 0.0
        self.min_ms = math.inf
        self.max_ms = 0.0

    def add(self, duration_ms: float, ok: bool) -> None:
        self.count += 1
        if not ok:
            self.errors += 1
        self.sum_ms += duration_ms
        if duration_ms < self.min_ms:
            self.min_ms = duration_ms
        if duration_ms > self.max_ms:
            self.max_ms = duration_ms

    def row(self) -> dict[str, Any]:
        count = self.count
        return {
            "count": count,
            "errors": self.errors,
            "avg_duration_ms": self.sum_ms / count if count else 0.0,
            "min_duration_ms": self.min_ms if count else 0.0,
            "max_duration_ms": self.max_ms,
        }


class EngineMetrics:
    def __init__(self) -> None:
        self.success = 0
        self.error = 0
        self.deferred = 0
        self.spawns = 0
        self.deaths = 0
        self.overall = FunctionStats()
        self.buckets = [0] * (len(BUCKETS_S) + 1)  # the last one is +Inf
        self.by_function: dict[str, FunctionStats] = {}

    @property
    def total(self) -> int:
        return self.success + self.error

    def record(self, function_id: str, duration_ms: float, ok: bool) -> None:
        if ok:
            self.success += 1
        else:
            self.error += 1
        self.overall.add(duration_ms, ok)
        self.buckets[bisect.bisect_left(BUCKETS_S, duration_ms / 1000)] += 1
        stats = self.by_function.get(function_id)
        if stats is None:
            key = function_id if len(self.by_function) < MAX_FUNCTIONS else OTHER
            stats = self.by_function.get(key)
            if stats is None:
                stats = self.by_function[key] = FunctionStats()
        stats.add(duration_ms, ok)

    def cumulative_buckets(self) -> list[tuple[str, int]]:
        """(le, count) pairs as Prometheus wants them, ending with +Inf."""
        rows = []
        running = 0
        for bound, count in zip((*BUCKETS_S, math.inf), self.buckets, strict=True):
            running += count
            rows.append(("+Inf" if bound == math.inf else repr(float(bound)), running))
        return rows
