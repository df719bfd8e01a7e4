"""The cap on a queue's dead letters, shared by both adapters.

A DLQ only grows: every job that fails for good lands there until someone redrives it, so a
handler that always fails (or a flood of poison messages) would grow it without end. Each
queue keeps at most ``max_dlq_per_queue`` dead letters (default 10,000); beyond it the
oldest are dropped so the newest failures stay visible. Drops are counted per queue
(``dlq_dropped`` in the module's introspection) and logged at the first drop of a queue and
every :data:`LOG_EVERY` drops after it, so a flood costs a few log lines, not one per job.
"""

from __future__ import annotations

import logging

log = logging.getLogger("iii_trio.queue")

LOG_EVERY = 1000


class DeadLetterDrops:
    """Counts (and logs) the dead letters dropped to keep each queue within ``cap``."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.counts: dict[str, int] = {}

    def dropped(self, queue: str, count: int) -> None:
        if count <= 0:
            return
        before = self.counts.get(queue, 0)
        after = self.counts[queue] = before + count
        if before == 0 or after // LOG_EVERY > before // LOG_EVERY:
            log.warning(
                "queue %s: DLQ full (%d kept); %d oldest dead letter(s) dropped so far",
                queue,
                self.cap,
                after,
            )
