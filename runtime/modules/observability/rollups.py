"""Pre-aggregated metric rollups (``engine::rollups::list``, spec/modules.md §9.3).

Three levels: 0 = 1-minute buckets (the last 60, one hour), 1 = 5-minute buckets (the last
288, one day), 2 = 1-hour buckets (the last 168, one week). Every value the engine records
(one per finished invocation, worker connect / disconnect, numeric ``MTRC`` data point)
goes into the open minute; when a minute closes it is merged into its 5-minute and hour
buckets, so a value costs one update, not three. A bucket holds at most
:data:`MAX_NAMES_PER_BUCKET` metric names; further names in that bucket are counted in
``dropped``. Bucket times are Unix seconds on the observer's clock.

What a row aggregates: ``count`` values, their ``sum``, ``min``, ``max``, ``avg`` and
``last``. For the engine's event counters (``iii.invocations.total|success|error``,
``iii.workers.spawns|deaths``) each event is the value 1, so ``count`` is the number of
events in the bucket; ``iii.invocation.duration`` values are milliseconds.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Any

LEVELS = ((60, 60), (300, 288), (3600, 168))  # (seconds per bucket, buckets kept)
MAX_NAMES_PER_BUCKET = 128


class Agg:
    __slots__ = ("count", "last", "max", "min", "sum")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")
        self.last = 0.0

    def add(self, value: float) -> None:
        value = float(value)
        self.count += 1
        self.sum += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        self.last = value

    def merge(self, other: Agg) -> None:
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.last = other.last

    def row(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
            "avg": self.sum / self.count if self.count else 0.0,
            "last": self.last,
        }


class Bucket:
    __slots__ = ("start_s", "values")

    def __init__(self, start_s: int) -> None:
        self.start_s = start_s
        self.values: dict[str, Agg] = {}


class Rollups:
    def __init__(self) -> None:
        self.levels: list[deque[Bucket]] = [deque(maxlen=kept) for _, kept in LEVELS]
        self.dropped = 0

    def add(self, name: str, value: float, now_s: int) -> None:
        bucket = self._open(0, now_s)
        agg = bucket.values.get(name)
        if agg is None:
            if len(bucket.values) >= MAX_NAMES_PER_BUCKET:
                self.dropped += 1
                return
            agg = bucket.values[name] = Agg()
        agg.add(value)

    def _open(self, level: int, now_s: int) -> Bucket:
        interval = LEVELS[level][0]
        start = now_s - now_s % interval
        ring = self.levels[level]
        if ring and ring[-1].start_s >= start:
            return ring[-1]  # the open bucket (or a clock that stepped back: keep adding)
        if level == 0 and ring:
            closed = ring[-1]
            for upper in range(1, len(LEVELS)):
                self._merge_into(self._open(upper, closed.start_s), closed)
        bucket = Bucket(start)
        ring.append(bucket)
        return bucket

    def _merge_into(self, target: Bucket, source: Bucket, *, count: bool = True) -> None:
        for name, agg in source.values.items():
            into = target.values.get(name)
            if into is None:
                if len(target.values) >= MAX_NAMES_PER_BUCKET:
                    self.dropped += count
                    continue
                into = target.values[name] = Agg()
            into.merge(agg)

    def buckets(self, level: int) -> list[Bucket]:
        """Level ``level``'s buckets, oldest first; above level 0 the open bucket includes
        the open minute (merged into a copy)."""
        ring = list(self.levels[level])
        minutes = self.levels[0]
        if level == 0 or not minutes:
            return ring
        minute = minutes[-1]
        interval = LEVELS[level][0]
        start = minute.start_s - minute.start_s % interval
        if ring and ring[-1].start_s == start:
            merged = copy.deepcopy(ring[-1])
            ring[-1] = merged
        else:
            merged = Bucket(start)
            ring.append(merged)
        self._merge_into(merged, minute, count=False)  # a query counts no drops
        return ring

    def rows(
        self, level: int, start_s: float | None, end_s: float | None, name: str | None
    ) -> list[dict[str, Any]]:
        interval = LEVELS[level][0]
        out = []
        for bucket in self.buckets(level):
            if start_s is not None and bucket.start_s + interval <= start_s:
                continue
            if end_s is not None and bucket.start_s > end_s:
                continue
            for metric, agg in bucket.values.items():
                if name and metric != name:
                    continue
                out.append(
                    {
                        "metric_name": metric,
                        "level": level,
                        "interval_seconds": interval,
                        "start_time": bucket.start_s * 1000,
                        "end_time": (bucket.start_s + interval) * 1000,
                        **agg.row(),
                    }
                )
        return out

    def stats(self) -> dict[str, Any]:
        return {
            "buckets": [len(ring) for ring in self.levels],
            "capacity": [kept for _, kept in LEVELS],
            "dropped": self.dropped,
        }
