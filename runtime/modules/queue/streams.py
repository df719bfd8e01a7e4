"""The jobs of one (queue, function) pair waiting for delivery (spec/modules.md §6.5).

A :class:`Stream` holds its waiting jobs in a line and counts its deliveries. Two lines:

- :class:`TimedLine` (``concurrent``): the earliest ready job first; a job keeps the order
  it was first queued with, so a retried job goes back in front of later ones.
- :class:`GroupedLine` (``fifo``): one line per group (``group_id``, ``default`` when the
  job has none). A group hands out its next job only after the previous one settled
  (succeeded, or dead-lettered after its inline retries), so each group runs strictly in
  enqueue order while different groups run side by side, up to the stream's concurrency;
  among the free groups the job enqueued first goes first.
"""

from __future__ import annotations

import heapq
import math
from typing import Protocol

import trio

from iii_trio.runtime.modules.queue.jobs import Job

DEFAULT_GROUP = "default"


class Line(Protocol):
    def push(self, job: Job, ready_at: float, order: int) -> None: ...

    def pop(self, now: float) -> Job | None:
        """The next job to deliver, or None when none may go now."""

    def next_at(self) -> float:
        """When :meth:`pop` may return a job without any push or :meth:`done` first."""

    def done(self, job: Job) -> None:
        """The delivery of ``job`` (popped earlier) ended."""

    def __len__(self) -> int: ...


class TimedLine:
    def __init__(self) -> None:
        # (ready at, order, job): orders are unique, so the job itself is never compared.
        self._heap: list[tuple[float, int, Job]] = []

    def push(self, job: Job, ready_at: float, order: int) -> None:
        heapq.heappush(self._heap, (ready_at, order, job))

    def pop(self, now: float) -> Job | None:
        if self._heap and self._heap[0][0] <= now:
            return heapq.heappop(self._heap)[2]
        return None

    def next_at(self) -> float:
        return self._heap[0][0] if self._heap else math.inf

    def done(self, job: Job) -> None:
        pass

    def __len__(self) -> int:
        return len(self._heap)


def group_of(job: Job) -> str:
    return DEFAULT_GROUP if job.group_id is None else job.group_id


class GroupedLine:
    """FIFO per group. Jobs are always ready (FIFO retries wait inside their delivery)."""

    def __init__(self) -> None:
        self._groups: dict[str, list[tuple[int, Job]]] = {}  # heap by order, per group
        self._busy: set[str] = set()  # groups with a job being delivered
        # (order of the head job, group) for groups that may go; entries go stale when the
        # group turns busy or gets a new head, and are skipped when they come up.
        self._free: list[tuple[int, str]] = []
        self._count = 0

    def push(self, job: Job, ready_at: float, order: int) -> None:
        group = group_of(job)
        heapq.heappush(self._groups.setdefault(group, []), (order, job))
        self._count += 1
        if group not in self._busy:
            heapq.heappush(self._free, (order, group))

    def pop(self, now: float) -> Job | None:
        while self._free:
            order, group = heapq.heappop(self._free)
            waiting = self._groups.get(group)
            if group in self._busy or not waiting or waiting[0][0] != order:
                continue  # stale
            _, job = heapq.heappop(waiting)
            if not waiting:
                del self._groups[group]
            self._busy.add(group)
            self._count -= 1
            return job
        return None

    def next_at(self) -> float:
        return math.inf  # only a push or a finished delivery frees a job

    def done(self, job: Job) -> None:
        group = group_of(job)
        self._busy.discard(group)
        waiting = self._groups.get(group)
        if waiting:
            heapq.heappush(self._free, (waiting[0][0], group))

    def __len__(self) -> int:
        return self._count


class Stream:
    """The jobs of one (queue, function) pair and the settings they are delivered with."""

    def __init__(self, queue: str, function_id: str, *, concurrency: int, fifo: bool) -> None:
        self.queue, self.function_id = queue, function_id
        self.fifo = fifo
        self.concurrency = concurrency
        self.slots = trio.Semaphore(concurrency)  # deliveries at once
        self.line: Line = GroupedLine() if fifo else TimedLine()
        self.order: dict[str, int] = {}  # job id -> the order it was first queued with
        self.in_flight = 0
        self.changed = trio.Event()
        self.consumer: trio.CancelScope | None = None
        # Held by the running consumer, so a restarted one waits for its predecessor's
        # clean-up to finish.
        self.consuming = trio.Lock()

    @property
    def waiting(self) -> int:
        return len(self.line)

    def push(self, job: Job, ready_at: float, order: int) -> None:
        self.order.setdefault(job.id, order)
        self.line.push(job, ready_at, self.order[job.id])
        self.changed.set()

    def forget(self, job: Job) -> None:
        self.order.pop(job.id, None)

    def clear(self) -> None:
        """Drop every waiting job (they are somewhere else too)."""
        self.line = GroupedLine() if self.fifo else TimedLine()
        self.order.clear()

    async def next_job(self) -> Job:
        """Wait until a job may be delivered and take it."""
        while True:
            job = self.line.pop(trio.current_time())
            if job is not None:
                return job
            self.changed = trio.Event()
            with trio.move_on_at(self.line.next_at()):
                await self.changed.wait()
