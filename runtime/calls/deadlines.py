"""One timer task for the deadlines of every invocation that has no task of its own.

Most routed calls are sent to their target the moment they are routed and settled by the
target's answer, in the target's reader task; a task per call only to hold its deadline
cost about a fifth of the engine's CPU per call (docs/performance.md). Those calls register
their deadline here instead, and one task expires whichever comes due.

Calls are grouped by their timeout: within a group, deadlines (routing time + timeout) come
in the order the calls were added, so each group is an insertion-ordered dict whose first
entry is its earliest deadline. Adding and removing are O(1); the timer looks only at the
first entry of each group (there are few distinct timeouts).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import trio

from iii_trio.actors import Actor


class Expiring(Protocol):
    deadline: float  # trio clock
    timeout_ms: int

    def expire(self) -> None:
        """The deadline passed before anything else settled the call."""


class Deadlines(Actor):
    kind = "service"

    def __init__(self) -> None:
        super().__init__("deadlines")
        self._groups: dict[int, dict[Expiring, None]] = {}
        # The deadline the timer sleeps until; an earlier one wakes it. It may be stale
        # (that call finished): the timer then wakes for nothing once and looks again.
        self._next = math.inf
        self._wake = trio.Event()

    def __len__(self) -> int:
        return sum(len(group) for group in self._groups.values())

    def add(self, item: Expiring) -> None:
        group = self._groups.get(item.timeout_ms)
        if group is None:
            group = self._groups[item.timeout_ms] = {}
        group[item] = None
        if item.deadline < self._next:
            self._next = item.deadline
            self._wake.set()

    def discard(self, item: Expiring) -> None:
        group = self._groups.get(item.timeout_ms)
        if group is not None:
            group.pop(item, None)
            if not group:
                del self._groups[item.timeout_ms]

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self._expire_due(trio.current_time())
            heads = [next(iter(group)).deadline for group in self._groups.values()]
            self._next = min(heads, default=math.inf)
            self._wake = trio.Event()
            with trio.move_on_at(self._next):
                await self._wake.wait()

    def _expire_due(self, now: float) -> None:
        for timeout_ms, group in list(self._groups.items()):
            while group:
                item = next(iter(group))
                if item.deadline > now:
                    break
                del group[item]
                item.expire()  # may discard() other items: the loop re-reads the group
            if not group and self._groups.get(timeout_ms) is group:
                del self._groups[timeout_ms]
