"""What the queue tests share: handlers that are engine functions, recording what they
receive, and shortcuts to bind and call."""

from __future__ import annotations

from typing import Any

import trio

from iii_trio.runtime.calls.errors import InvocationError
from iii_trio.runtime.calls.invocation import CallContext, EngineFunction
from iii_trio.runtime.calls.registry import Binding
from iii_trio.runtime.engine import Engine


class Handler:
    """An engine function recording what it receives; fails while ``failing`` says so."""

    def __init__(self, engine: Engine, function_id: str, *, fail_times: int = 0) -> None:
        self.function_id = function_id
        self.received: list[tuple[float, Any]] = []
        self.fail_times = fail_times
        self.hang = False
        self.changed = trio.Event()
        engine.registry.add_engine_function(EngineFunction(function_id, self.handle))

    async def handle(self, data: Any, ctx: CallContext) -> Any:
        self.received.append((trio.current_time(), data))
        self.changed.set()
        if self.hang:
            await trio.sleep_forever()
        if self.fail_times:
            self.fail_times -= 1
            raise InvocationError("boom", f"{self.function_id} failed")
        return None

    async def wait_for(self, count: int) -> None:
        while len(self.received) < count:
            self.changed = trio.Event()
            await self.changed.wait()

    def datas(self) -> list[Any]:
        return [data for _, data in self.received]


def subscribe(engine: Engine, binding_id: str, function_id: str, **config: Any) -> Binding:
    binding = Binding(None, binding_id, "queue", function_id, {"topic": "t", **config})
    engine.triggers.bind(binding)
    return binding


async def call(engine: Engine, function_id: str, data: Any) -> Any:
    return await engine.router.call(function_id, data, caller_module="test")


class GroupHandler:
    """Records ``{customer, n}`` jobs as they start, working ``work`` seconds on each; job
    (customer, n) fails ``fail[(customer, n)]`` times (-1: always). Notes the peak number in
    flight and whether two jobs of one group ever ran at once."""

    def __init__(
        self,
        engine: Engine,
        function_id: str,
        *,
        work: float = 0.0,
        fail: dict[tuple[str, int], int] | None = None,
    ) -> None:
        self.work = work
        self.fail = dict(fail or {})
        self.starts: list[tuple[float, str, int]] = []
        self.running: list[str] = []
        self.peak = 0
        self.groups_overlapped = False
        self.finished = 0
        self.changed = trio.Event()
        engine.registry.add_engine_function(EngineFunction(function_id, self.handle))

    async def handle(self, data: Any, ctx: CallContext) -> Any:
        group, n = data["customer"], data["n"]
        self.starts.append((trio.current_time(), group, n))
        self.groups_overlapped |= group in self.running
        self.running.append(group)
        self.peak = max(self.peak, len(self.running))
        try:
            await trio.sleep(self.work)  # the job's work (virtual time, or real with redis)
            left = self.fail.get((group, n), 0)
            if left:
                self.fail[(group, n)] = left - 1
                raise InvocationError("boom", f"{group}{n} failed")
        finally:
            self.running.remove(group)
            self.finished += 1
            self.changed.set()
        return None

    async def wait_for(self, finished: int) -> None:
        while self.finished < finished:
            self.changed = trio.Event()
            await self.changed.wait()

    def order(self, group: str) -> list[int]:
        return [n for _, g, n in self.starts if g == group]


async def enqueue_lanes(engine: Engine, jobs: list[tuple[str, int]]) -> None:
    module: Any = engine.modules["queue"]
    for group, n in jobs:
        await module.enqueue_named("lanes", "lanes::fn", {"customer": group, "n": n})
