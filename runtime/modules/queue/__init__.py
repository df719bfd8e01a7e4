"""QueueModule (``modules::queue::QueueModule``; spec §6, D8).

Topic queues: ``enqueue {topic, data}`` makes one job per distinct function bound to the
topic with a ``queue`` trigger (held as backlog while nobody is bound). Named queues (from
``queue_configs``) take jobs through the invoke action ``{type: "enqueue", queue}``. Each
(queue, function) pair is a :class:`~.streams.Stream` with one consumer task that delivers
up to ``concurrency`` jobs at once, each delivery an invocation whose deadline is the lease.
A failed delivery waits ``backoff_ms * 2^(n-1)`` and is delivered again; after
``max_attempts`` deliveries the job moves to the dead-letter queue (DLQ), from which
``iii::queue::redrive`` / ``iii::queue::redrive_message`` bring it back. FIFO streams keep
one order per group and retry a failed job in place, blocking only its group.

- :mod:`.config`: the settings of the module and its adapters;
- :mod:`.module`: the trigger, the functions and the consumer both adapters share, with
  :mod:`.jobs` and :mod:`.streams`;
- :mod:`.adapters`: where jobs live, ``BuiltinQueueAdapter`` (memory or SQLite) or
  ``RedisAdapter`` (Redis streams shared by every engine on that Redis, at least once).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from iii_trio.runtime.modules.kind import ModuleKind
from iii_trio.runtime.modules.queue.config import CHOICE, BuiltinQueueConfig, RedisQueueConfig

if TYPE_CHECKING:
    from iii_trio.runtime.config.loading import ModuleEntry
    from iii_trio.runtime.modules.base import EngineModule
    from iii_trio.runtime.modules.context import ModuleContext


def _create(ctx: ModuleContext, entry: ModuleEntry) -> EngineModule:
    from iii_trio.runtime.modules.queue.config import QueueConfig
    from iii_trio.runtime.modules.queue.module import QueueModule  # imported only when configured

    assert isinstance(entry.config, QueueConfig)  # its adapter is checked by the catalog
    return QueueModule(ctx, entry.config)


KIND = ModuleKind(
    CHOICE,
    _create,
    trigger_types=("queue",),
    invoke_actions={"enqueue": "QueueModule not loaded"},
    adapters=(BuiltinQueueConfig, RedisQueueConfig),
    adapter_hint="modules::queue::BuiltinQueueAdapter or modules::queue::RedisAdapter",
)
