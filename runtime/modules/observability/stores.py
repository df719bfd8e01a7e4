"""Bounded in-memory stores: every store is a ring buffer with a cap and a drop counter.

A full ring drops its oldest item to make room and counts it in ``dropped``; items older
than the retention window are removed as new ones arrive and counted in ``expired``.
Nothing here grows past its cap.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# Defaults where the spec leaves them open (spec/modules.md §9.1 lists the others).
DEFAULT_MAX_SPANS = 10_000


class Ring(Generic[T]):
    def __init__(
        self, name: str, capacity: int, stamp: Callable[[T], int], retention_ns: int | None
    ) -> None:
        self.name = name
        self.capacity = capacity
        self.items: deque[T] = deque(maxlen=capacity)
        self.dropped = 0  # pushed out by newer items at the cap
        self.expired = 0  # older than the retention window
        self.added = 0
        self._stamp = stamp
        self._retention_ns = retention_ns

    def append(self, item: T, now_ns: int) -> None:
        items = self.items
        if len(items) == self.capacity:
            self.dropped += 1
        items.append(item)  # the deque's maxlen drops the oldest
        self.added += 1
        if self._retention_ns is not None:
            cutoff = now_ns - self._retention_ns
            stamp = self._stamp
            while items and stamp(items[0]) < cutoff:
                items.popleft()
                self.expired += 1

    def clear(self) -> None:
        self.items.clear()

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def stats(self) -> dict[str, Any]:
        return {
            "count": len(self.items),
            "capacity": self.capacity,
            "added": self.added,
            "dropped": self.dropped,
            "expired": self.expired,
        }
