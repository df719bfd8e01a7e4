"""OTP-style supervisors: restart strategies, restart types and restart intensity.

Children start in order, each only after the previous one reported ready, and stop in
reverse order. Each child runs in its own shielded cancel scope that only its supervisor
cancels, so even a cancellation from outside stops children one by one, last first.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from iii_trio.actors.actor import Actor
from iii_trio.actors.system import ActorState, current_actor_id, current_system

log = logging.getLogger("iii_trio.actors")


class Strategy(enum.Enum):
    ONE_FOR_ONE = "one_for_one"  # restart only the child that exited
    ONE_FOR_ALL = "one_for_all"  # restart every child
    REST_FOR_ONE = "rest_for_one"  # restart it and the children started after it


class Restart(enum.Enum):
    PERMANENT = "permanent"  # always restarted
    TRANSIENT = "transient"  # restarted only after an exception
    TEMPORARY = "temporary"  # never restarted


@attrs.frozen
class ChildSpec:
    id: str
    factory: Callable[[], Actor]  # a fresh actor for every (re)start
    restart: Restart = Restart.PERMANENT
    shutdown_timeout: float = 5.0  # between request_stop() and cancellation


class RestartIntensityExceeded(Exception):
    """A supervisor gave up: too many restarts too fast. Its parent sees a failed child."""

    def __init__(self, supervisor: str, restarts: int, seconds: float) -> None:
        super().__init__(
            f"supervisor {supervisor!r} gave up after {restarts} restarts within {seconds:g} s"
        )
        self.supervisor = supervisor


@attrs.define(eq=False)
class _Child:
    spec: ChildSpec
    actor_id: str = ""
    actor: Actor | None = None
    restarts: int = 0
    incarnation: int = 0
    scope: trio.CancelScope | None = None
    done: trio.Event = attrs.field(factory=trio.Event)
    stopping: bool = False
    init_error: BaseException | None = None


class Supervisor(Actor):
    kind = "supervisor"
    stops_gracefully = True

    def __init__(
        self,
        name: str,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within_seconds: float = 5.0,
    ) -> None:
        super().__init__(name)
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.within_seconds = within_seconds
        self._specs = list(children)
        self._children: list[_Child] = []
        self._exits: deque[tuple[_Child, int, BaseException | None]] = deque()
        self._wake = trio.Event()
        self._restart_times: deque[float] = deque()
        self._stop_requested = False
        self._nursery: trio.Nursery | None = None
        self._temporaries: trio.Nursery | None = None
        self._id = ""

    # --- public API ---------------------------------------------------------------------

    def children(self) -> list[str]:
        return [child.actor_id for child in self._children]

    def request_stop(self) -> None:
        self._stop_requested = True
        self._wake.set()

    async def start_child(self, spec: ChildSpec) -> Actor:
        if self._nursery is None:
            raise RuntimeError(f"supervisor {self.name!r} is not running")
        child = _Child(spec)
        self._children.append(child)
        await self._start(child)
        if child.init_error is not None:
            self._children.remove(child)
            raise child.init_error
        assert child.actor is not None
        return child.actor

    async def stop_child(self, child_id: str) -> None:
        for child in self._children:
            if child.spec.id == child_id:
                self._children.remove(child)
                await self._stop(child)
                return
        raise KeyError(child_id)

    def spawn(self, actor: Actor) -> None:
        """Start a temporary child now, without restart bookkeeping (one per routed call)."""
        if self._temporaries is None:
            raise RuntimeError(f"supervisor {self.name!r} is not running")
        self._temporaries.start_soon(self._run_temporary, actor)

    # --- the body -----------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        self._id = current_actor_id()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self._hold_temporaries)
            try:
                for spec in self._specs:
                    child = _Child(spec)
                    self._children.append(child)
                    await self._start(child)
                    if child.init_error is not None:
                        raise child.init_error
                task_status.started()
                await self._supervise()
            finally:
                with trio.CancelScope(shield=True):
                    await self._stop_everything()
                nursery.cancel_scope.cancel()
        self._nursery = None

    async def _hold_temporaries(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as temporaries:
            self._temporaries = temporaries
            task_status.started()
            await trio.sleep_forever()

    async def _run_temporary(self, actor: Actor) -> None:
        try:
            await current_system().run_actor(actor, self._id)
        except Exception:
            log.exception("temporary actor %s:%s failed", actor.kind, actor.name)

    async def _supervise(self) -> None:
        while not self._stop_requested:
            if not self._exits:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            child, incarnation, error = self._exits.popleft()
            if child in self._children and child.incarnation == incarnation:
                await self._child_exited(child, error)

    async def _child_exited(self, child: _Child, error: BaseException | None) -> None:
        restart = child.spec.restart
        if restart is Restart.TEMPORARY or (restart is Restart.TRANSIENT and error is None):
            self._children.remove(child)
            return
        now = trio.current_time()
        self._restart_times.append(now)
        while self._restart_times and self._restart_times[0] <= now - self.within_seconds:
            self._restart_times.popleft()
        if len(self._restart_times) > self.max_restarts:
            raise RestartIntensityExceeded(
                self.name, self.max_restarts, self.within_seconds
            ) from error
        index = self._children.index(child)
        if self.strategy is Strategy.ONE_FOR_ONE:
            affected = [child]
        elif self.strategy is Strategy.ONE_FOR_ALL:
            affected = list(self._children)
        else:
            affected = self._children[index:]
        for other in reversed(affected):
            if other is not child:
                await self._stop(other)
        for restarted in affected:
            restarted.restarts += 1
            restarted.done = trio.Event()
            restarted.stopping = False
            await self._start(restarted)
            if restarted.init_error is not None:
                error, restarted.init_error = restarted.init_error, None
                self._exits.append((restarted, restarted.incarnation, error))

    # --- one child ----------------------------------------------------------------------

    async def _start(self, child: _Child) -> None:
        assert self._nursery is not None
        child.incarnation += 1
        child.actor = child.spec.factory()
        if not child.actor_id:
            child.actor_id = current_system().new_id(child.actor.kind, child.actor.name)
        await self._nursery.start(self._child_task, child, child.incarnation)

    async def _child_task(
        self, child: _Child, incarnation: int, task_status: trio.TaskStatus[None]
    ) -> None:
        assert child.actor is not None
        started = False

        class Ready:
            def started(self, value: Any = None) -> None:
                nonlocal started
                started = True
                task_status.started()

        error: BaseException | None = None
        with trio.CancelScope(shield=True) as scope:
            child.scope = scope
            try:
                await current_system().run_actor(
                    child.actor,
                    self._id,
                    actor_id=child.actor_id,
                    restarts=child.restarts,
                    task_status=Ready(),
                )
            except Exception as exc:
                error = exc
        child.done.set()
        if not started:
            child.init_error = error or RuntimeError(
                f"{child.actor_id} returned before reporting it started"
            )
            task_status.started()
            return
        if child.stopping or scope.cancelled_caught:
            return
        if error is not None:
            log.warning("%s failed: %r", child.actor_id, error)
        self._exits.append((child, incarnation, error))
        self._wake.set()

    async def _stop(self, child: _Child) -> None:
        """request_stop(), up to shutdown_timeout, then cancellation (at once for an actor
        that does not stop gracefully)."""
        if child.done.is_set():
            return
        child.stopping = True
        current_system().set_state(child.actor_id, ActorState.STOPPING)
        assert child.actor is not None
        if child.actor.stops_gracefully:
            child.actor.request_stop()
            with trio.move_on_after(child.spec.shutdown_timeout):
                await child.done.wait()
        if not child.done.is_set():
            assert child.scope is not None
            child.scope.cancel()
            await child.done.wait()

    async def _stop_everything(self) -> None:
        if self._temporaries is not None:
            self._temporaries.cancel_scope.cancel()
        for child in reversed(self._children):
            await self._stop(child)
