"""CronModule (``modules::cron::CronModule``, ``iii-cron``; spec/modules.md §8, D9).

Each ``cron`` binding is a job task: compute the next fire time (croniter, UTC, 5/6/7
fields or an ``@`` shorthand), sleep until it, take the tick's lock, run the condition and
the function (awaited, so runs of one binding never overlap), then compute the next time
from *now*, which skips ticks missed meanwhile.

The lock is per tick: ``(job_id, scheduled time)``. In one engine a dict remembers the last
tick each job fired, so two bindings sharing a trigger id (a replay while the old socket is
half-open) fire once. With the RedisCronAdapter the key is
``cron_lock:<job_id>:<scheduled unix ms>`` set with ``SET NX PX lock_ttl``: the first engine
fires, the others see the key, and it is never deleted early, so clock skew between engines
cannot make a tick fire twice.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import trio
from croniter import croniter

from iii_trio.runtime.calls import inputs
from iii_trio.runtime.calls.errors import TriggerConfigError
from iii_trio.runtime.modules.base import EngineModule
from iii_trio.runtime.modules.cron.config import CronConfig, KvCronConfig
from iii_trio.runtime.modules.storage.config import RedisAdapterConfig
from iii_trio.runtime.modules.storage.redis import ReconnectingRedis, RedisError, open_reconnecting

if TYPE_CHECKING:
    from iii_trio.runtime.calls.registry import Binding, EngineTriggerType
    from iii_trio.runtime.config.loading import ModuleEntry
    from iii_trio.runtime.modules.context import ModuleContext

log = logging.getLogger("iii_trio.cron")

REDIS_LOCK_TTL_MS = 30_000


def create(ctx: ModuleContext, entry: ModuleEntry) -> CronModule:
    assert isinstance(entry.config, CronConfig)
    adapter = entry.config.adapter
    if isinstance(adapter, RedisAdapterConfig):
        return CronModule(ctx, redis_url=adapter.redis_url)
    # KvCronAdapter: the in-process lock needs no TTL (its lock_ttl_ms has no effect here).
    assert isinstance(adapter, KvCronConfig)
    return CronModule(ctx)


def schedule(expression: str) -> Callable[[float], float]:
    """``next_after(unix seconds) -> unix seconds`` for a valid expression, else
    :class:`TriggerConfigError` with the spec's message."""
    try:
        croniter(expression, 0.0, second_at_beginning=True)
    except (ValueError, KeyError) as exc:  # croniter's errors derive from ValueError
        raise TriggerConfigError(f"Invalid cron expression '{expression}': {exc}") from None

    def next_after(now: float) -> float:
        start = datetime.fromtimestamp(now, UTC)
        nxt: float = croniter(expression, start, second_at_beginning=True).get_next(float)
        return nxt

    return next_after


def iso(seconds: float, *, millis: bool) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    text = moment.isoformat(timespec="milliseconds" if millis else "seconds")
    return text.replace("+00:00", "Z")


@attrs.frozen(kw_only=True)
class CronTriggerConfig:
    """A ``cron`` binding: ``{expression, condition_function_id?}``."""

    RULES: ClassVar[inputs.Rules] = inputs.Rules(
        not_object="cron trigger config must be an object with 'expression'",
        wrong="cron trigger '{key}' must be a string",
    )
    expression: str = inputs.field(
        missing="Cron expression is required",
        wrong="Cron expression must be a string",
        blank_is_missing=True,
    )
    condition_function_id: str | None = None


class CronTrigger:
    """The ``cron`` trigger type: config ``{expression, condition_function_id?}``."""

    id = "cron"
    description = "Runs a function on a cron schedule (UTC)"

    def __init__(self, module: CronModule) -> None:
        self.module = module
        self.jobs: dict[Binding, trio.CancelScope] = {}

    def bind(self, binding: Binding) -> None:
        config = inputs.structure_config(binding.config, CronTriggerConfig)
        next_after = schedule(config.expression)
        self.jobs[binding] = self.module.start_job(binding, next_after)

    def unbind(self, binding: Binding) -> None:
        scope = self.jobs.pop(binding, None)
        if scope is not None:
            scope.cancel()


class CronModule(EngineModule):
    def __init__(self, ctx: ModuleContext, *, redis_url: str | None = None) -> None:
        super().__init__(ctx)
        self.redis_url = redis_url
        self.trigger = CronTrigger(self)
        # Wall-clock seconds; tests tie it to trio's (autojump) clock.
        self.clock: Callable[[], float] = time.time
        self.next_fire: dict[str, float] = {}  # job id -> next scheduled time (introspection)
        self._fired: dict[str, float] = {}  # job id -> last tick fired (in-process lock)
        self._redis: ReconnectingRedis | None = None
        self._nursery: trio.Nursery | None = None

    def trigger_types(self) -> list[EngineTriggerType]:
        return [self.trigger]

    def introspect(self) -> dict[str, Any]:
        return {
            "adapter": "redis" if self.redis_url else "in-process",
            "jobs": {job: iso(at, millis=False) for job, at in self.next_fire.items()},
        }

    async def serve(self, task_status: trio.TaskStatus[Any]) -> None:
        async with contextlib.AsyncExitStack() as stack:
            if self.redis_url is not None:
                self._redis = await stack.enter_async_context(
                    open_reconnecting(self.redis_url, name="cron")
                )
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()

    def start_job(self, binding: Binding, next_after: Callable[[float], float]) -> trio.CancelScope:
        assert self._nursery is not None, "cron bindings arrive once the module runs"
        scope = trio.CancelScope()
        self._nursery.start_soon(self._run_job, binding, next_after, scope)
        return scope

    async def _run_job(
        self, binding: Binding, next_after: Callable[[float], float], scope: trio.CancelScope
    ) -> None:
        job_id = binding.id
        with scope:
            try:
                while True:
                    scheduled = next_after(self.clock())
                    self.next_fire[job_id] = scheduled
                    await trio.sleep(max(0.0, scheduled - self.clock()))
                    if await self._take_tick(job_id, scheduled):
                        await self._fire(binding, scheduled)
            finally:
                if not any(b.id == job_id for b in self.trigger.jobs):  # the last of the id
                    self.next_fire.pop(job_id, None)
                    self._fired.pop(job_id, None)

    async def _take_tick(self, job_id: str, scheduled: float) -> bool:
        if self._redis is None:
            if self._fired.get(job_id) == scheduled:
                return False
            self._fired[job_id] = scheduled
            return True
        key = f"cron_lock:{job_id}:{int(scheduled * 1000)}"
        try:
            taken = await self._redis.execute("SET", key, "1", "NX", "PX", REDIS_LOCK_TTL_MS)
        except RedisError as exc:
            log.warning("cron %s: no lock for %s (%s); tick skipped", job_id, key, exc)
            return False
        return bool(taken == "OK")

    async def _fire(self, binding: Binding, scheduled: float) -> None:
        payload = {
            "trigger": "cron",
            "job_id": binding.id,
            "scheduled_time": iso(scheduled, millis=False),
            "actual_time": iso(self.clock(), millis=True),
        }
        if self.ctx.observer is None:
            await self.fire_binding(binding, payload)
            return
        attributes = {"iii.cron.job_id": binding.id, "iii.function_id": binding.function_id}
        with self.ctx.span(f"cron {binding.id}", attributes=attributes):
            await self.fire_binding(binding, payload)
