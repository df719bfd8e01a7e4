"""OTP-style supervisors: restart strategies, restart types and restart intensity.

Children start in order, each only after the previous one reported ready, and stop in
reverse order. Each child runs in its own shielded cancel scope that only its supervisor
cancels, so even a cancellation from outside stops the children one by one, last first,
each with ``request_stop()``, then up to its ``shutdown_timeout``, then cancellation.

Every (re)start of a spec child gets a fresh actor from its ``ChildSpec.factory``; a child
that must stay the same object says so with ``ChildSpec.reusing`` (see there).

Short-lived children that need no restart bookkeeping (one per request, say) go through
``spawn()`` instead: they share one plain nursery and are cancelled together, before the
spec children are stopped. ``ActorSystem.run_temporary`` runs one such child inline in
the caller's task instead.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from iii_trio.actors.actor import Actor, ActorStatistics
from iii_trio.actors.system import ActorState, ActorSystem, current_actor_id, current_system

log = logging.getLogger("iii_trio.actors")


class Strategy(enum.Enum):
    ONE_FOR_ONE = "one_for_one"  # restart only the child that exited
    ONE_FOR_ALL = "one_for_all"  # stop the others, restart every child
    REST_FOR_ONE = "rest_for_one"  # restart it and the children started after it


class Restart(enum.Enum):
    PERMANENT = "permanent"  # always restarted
    TRANSIENT = "transient"  # restarted only after an exception
    TEMPORARY = "temporary"  # never restarted


@attrs.frozen
class ChildSpec:
    """One child of a supervisor: how to make it, when to restart it, how to stop it.

    ``factory`` is called at every start and restart and must return a fresh actor: the
    one that failed may hold the state that made it fail. A supervisor refuses a factory
    that hands back the incarnation it just ran (that restart fails, and counts toward the
    restart intensity like any failed restart) unless the spec says ``reuse=True``.

    ``reuse=True`` (or the ``ChildSpec.reusing`` constructor) is for a child that others
    hold a reference to, so it must stay the same object: each restart calls the same
    instance's ``run()`` again, which must therefore be re-entrant, starting from whatever
    its fields hold.
    """

    id: str  # unique among the supervisor's children
    factory: Callable[[], Actor]  # a fresh actor for every (re)start, unless reuse
    restart: Restart = Restart.PERMANENT
    shutdown_timeout: float = 5.0  # seconds between request_stop() and cancellation
    reuse: bool = False  # the factory may return the same actor again: run() is re-entrant

    @classmethod
    def reusing(
        cls,
        id: str,
        actor: Actor,
        *,
        restart: Restart = Restart.PERMANENT,
        shutdown_timeout: float = 5.0,
    ) -> ChildSpec:
        """A child that is always ``actor``: every restart runs its ``run()`` again."""
        return cls(
            id, lambda: actor, restart=restart, shutdown_timeout=shutdown_timeout, reuse=True
        )


@attrs.frozen
class SupervisorStatistics(ActorStatistics):
    """What ``Supervisor.statistics()`` reports: its children, besides the mailbox."""

    children: int  # spec children now, running or being restarted
    restarts: int  # restarts of its children since this supervisor (re)started
    temporaries: int  # spawn()ed temporaries running now


class RestartIntensityExceeded(Exception):
    """A supervisor gave up: too many restarts too fast. Its children are stopped and its
    parent sees it fail. ``__cause__`` is the last child failure (None after a normal exit
    of a permanent child)."""

    def __init__(self, supervisor: str, max_restarts: int, within_seconds: float) -> None:
        super().__init__(
            f"supervisor {supervisor!r} gave up: more than {max_restarts} restart(s) "
            f"within {within_seconds:g} s"
        )
        self.supervisor = supervisor
        self.max_restarts = max_restarts
        self.within_seconds = within_seconds


@attrs.define(eq=False)
class _Child:
    """A spec child across its incarnations."""

    spec: ChildSpec
    actor_id: str = ""  # given at the first start, kept across restarts
    actor: Actor | None = None  # the current incarnation
    restarts: int = 0
    # Bumped at every start, so an exit reported by an old incarnation is recognised.
    incarnation: int = 0
    scope: trio.CancelScope | None = None  # shielded; only the supervisor cancels it
    done: trio.Event = attrs.field(factory=trio.Event)  # the current incarnation ended
    stopping: bool = False  # the supervisor is stopping it: its exit is not a failure


class _ChildStarted:
    """The ``task_status`` of a spec child: remembers that the child reported ready."""

    __slots__ = ("_inner", "reported")

    def __init__(self, inner: trio.TaskStatus[Exception | None]) -> None:
        self.reported = False
        self._inner = inner

    def started(self, value: Any = None) -> None:
        # The value the child reports is not needed by the supervisor: ``None`` tells
        # _start that the child started (an exception would mean it failed to).
        self.reported = True
        self._inner.started(None)


def _hears_stop_requests(actor: Actor) -> bool:
    # The default request_stop() does nothing, so waiting shutdown_timeout for an actor
    # that does not override it would only delay the cancellation that follows anyway.
    return type(actor).request_stop is not Actor.request_stop


class Supervisor(Actor):
    """Starts its spec children in order, restarts them by ``strategy`` when they exit,
    and gives up (``RestartIntensityExceeded``) after more than ``max_restarts`` restarts
    within ``within_seconds``; also runs the temporaries given to ``spawn()``."""

    kind = "supervisor"

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
        _check_unique([spec.id for spec in children])
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.within_seconds = within_seconds
        self._specs = list(children)
        self._children: list[_Child] = []
        # Exits to act on, in the order they happened; the supervisor's own task handles
        # them one at a time, so a restart never races another restart.
        self._exits: deque[tuple[_Child, int, Exception | None]] = deque()
        self._wake = trio.Event()
        self._restart_times: deque[float] = deque()
        self._restarts = 0
        self._stop_requested = False
        self._accepting = False  # start_child()/spawn() allowed
        self._system: ActorSystem | None = None
        self._id = ""
        self._nursery: trio.Nursery | None = None
        self._temporaries: trio.Nursery | None = None
        self._temporaries_done: trio.Event | None = None

    # --- public API ---------------------------------------------------------------------

    def children(self) -> list[str]:
        """The actor ids of the spec children, in start order."""
        return [child.actor_id for child in self._children]

    def statistics(self) -> SupervisorStatistics:
        temporaries = self._temporaries
        return SupervisorStatistics(
            mailbox=super().statistics().mailbox,
            children=len(self._children),
            restarts=self._restarts,
            temporaries=len(temporaries.child_tasks) if temporaries is not None else 0,
        )

    def request_stop(self) -> None:
        self._stop_requested = True
        self._wake.set()

    async def start_child(self, spec: ChildSpec) -> Actor:
        """Add a child at runtime, after the others; returns it once it reported ready.

        A child that fails to start is not added, and its error is raised here.
        """
        if not self._accepting:
            raise RuntimeError(f"supervisor {self.name!r} is not running")
        _check_unique([child.spec.id for child in self._children] + [spec.id])
        child = _Child(spec)
        self._children.append(child)
        error = await self._start(child)
        if error is not None:
            self._children.remove(child)
            raise error
        assert child.actor is not None
        return child.actor

    async def stop_child(self, child_id: str) -> None:
        """Stop a child and remove it for good. ``child_id`` is its spec id or actor id."""
        for child in self._children:
            if child_id in (child.spec.id, child.actor_id):
                self._children.remove(child)
                await self._stop(child, ActorState.STOPPING)
                return
        raise KeyError(child_id)

    def spawn(self, actor: Actor) -> None:
        """Start a temporary child now, without restart bookkeeping.

        Its failure is logged and affects nothing else; it is cancelled when the
        supervisor stops, before the spec children.
        """
        if self._temporaries is None or not self._accepting:
            raise RuntimeError(f"supervisor {self.name!r} is not running")
        assert self._system is not None
        self._temporaries.start_soon(self._system.run_temporary, actor, self._id)

    # --- the body -----------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        self._system = system = current_system()
        self._id = current_actor_id()
        # Re-entrant, so a supervisor can be a reused child (ChildSpec.reusing): start clean.
        self._children = []
        self._exits.clear()
        self._restart_times.clear()
        self._restarts = 0
        self._stop_requested = False
        failure: BaseException | None = None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await nursery.start(self._hold_temporaries)
                self._accepting = True
                failure = await self._start_children()
                if failure is None:
                    task_status.started()
                    failure = await self._supervise()
            finally:
                self._accepting = False
                # Shielded: a supervisor cancelled from outside still stops its children
                # one by one, gracefully, rather than all at once.
                with trio.CancelScope(shield=True):
                    system.set_state(self._id, ActorState.STOPPING)
                    await self._stop_all()
                nursery.cancel_scope.cancel()
        self._nursery = None
        # Raised here, outside the nursery, so the parent sees the exception itself and
        # not an ExceptionGroup around it.
        if failure is not None:
            raise failure

    async def _start_children(self) -> Exception | None:
        for spec in self._specs:
            child = _Child(spec)
            self._children.append(child)
            error = await self._start(child)
            if error is not None:
                # OTP: a supervisor whose child fails to start fails to start itself.
                self._children.remove(child)
                return error
        return None

    async def _supervise(self) -> RestartIntensityExceeded | None:
        """Act on child exits until asked to stop; returns the failure when giving up."""
        while not self._stop_requested:
            if not self._exits:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            child, incarnation, error = self._exits.popleft()
            if child not in self._children or child.incarnation != incarnation:
                continue  # stale: stopped, removed or restarted since it was reported
            gave_up = await self._child_exited(child, error)
            if gave_up is not None:
                return gave_up
        return None

    async def _child_exited(
        self, child: _Child, error: Exception | None
    ) -> RestartIntensityExceeded | None:
        restart = child.spec.restart
        if restart is Restart.TEMPORARY or (restart is Restart.TRANSIENT and error is None):
            self._children.remove(child)
            return None
        if self._too_many_restarts():
            gave_up = RestartIntensityExceeded(self.name, self.max_restarts, self.within_seconds)
            gave_up.__cause__ = error
            return gave_up
        if self.strategy is Strategy.ONE_FOR_ONE:
            affected = [child]
        elif self.strategy is Strategy.ONE_FOR_ALL:
            affected = list(self._children)
        else:
            affected = self._children[self._children.index(child) :]
        for other in reversed(affected):
            if other is not child:
                await self._stop(other, ActorState.RESTARTING)
        for restarted in affected:
            restarted.restarts += 1
            self._restarts += 1
            start_error = await self._start(restarted)
            if start_error is not None:
                # Counts as an exit of the new incarnation: restarted (and counted) again.
                self._exits.append((restarted, restarted.incarnation, start_error))
        return None

    def _too_many_restarts(self) -> bool:
        """Record a restart now; True when that makes more than max_restarts within
        within_seconds (trio's clock, so tests can use the autojump clock)."""
        now = trio.current_time()
        times = self._restart_times
        times.append(now)
        while times[0] <= now - self.within_seconds:
            times.popleft()
        return len(times) > self.max_restarts

    # --- one spec child -----------------------------------------------------------------

    async def _start(self, child: _Child) -> Exception | None:
        """Start a new incarnation of ``child`` and wait until it reported ready.

        Returns None once it did, or the error when it failed before that.
        """
        assert self._nursery is not None
        assert self._system is not None
        try:
            actor = child.spec.factory()
        except Exception as exc:
            return exc
        if actor is child.actor and not child.spec.reuse:
            return RuntimeError(
                f"the factory of child {child.spec.id!r} returned the actor it ran before; "
                "return a fresh one, or declare the reuse with ChildSpec.reusing() "
                "(its run() must then be re-entrant)"
            )
        child.actor = actor
        child.incarnation += 1
        child.done = trio.Event()
        child.scope = None
        child.stopping = False
        if not child.actor_id:
            child.actor_id = self._system.new_id(actor.kind, actor.name)
        error: Exception | None = await self._nursery.start(self._child_task, child)
        return error

    async def _child_task(
        self, child: _Child, task_status: trio.TaskStatus[Exception | None]
    ) -> None:
        assert child.actor is not None
        assert self._system is not None
        incarnation, done = child.incarnation, child.done
        ready = _ChildStarted(task_status)
        error: Exception | None = None
        try:
            with trio.CancelScope(shield=True) as scope:
                child.scope = scope
                try:
                    await self._system.run_actor(
                        child.actor,
                        self._id,
                        actor_id=child.actor_id,
                        restarts=child.restarts,
                        task_status=ready,
                    )
                except Exception as exc:
                    error = exc
        finally:
            done.set()
        if not ready.reported:
            task_status.started(
                error or RuntimeError(f"{child.actor_id} returned before it reported started")
            )
            return
        # Stopped by the supervisor (request_stop or cancellation of the shielded scope,
        # which only the supervisor cancels, after setting ``stopping``): expected, not an
        # exit to act on. trio.Cancelled is not an Exception, so it is never an ``error``.
        if child.stopping:
            return
        if error is not None:
            log.warning("%s failed", child.actor_id, exc_info=error)
        self._exits.append((child, incarnation, error))
        self._wake.set()

    async def _stop(self, child: _Child, state: ActorState) -> None:
        """request_stop(), wait up to shutdown_timeout, then cancel (at once for an actor
        that cannot hear a stop request)."""
        if child.scope is None or child.done.is_set():
            return
        assert child.actor is not None
        assert self._system is not None
        child.stopping = True
        self._system.set_state(child.actor_id, state)
        if _hears_stop_requests(child.actor):
            try:
                child.actor.request_stop()
            except Exception:
                log.exception("%s: request_stop() failed; cancelling it", child.actor_id)
            else:
                with trio.move_on_after(child.spec.shutdown_timeout):
                    await child.done.wait()
        if not child.done.is_set():
            child.scope.cancel()
            await child.done.wait()

    async def _stop_all(self) -> None:
        """Temporaries first (cancelled together), then spec children, last started first."""
        if self._temporaries_done is not None:
            if self._temporaries is not None:
                self._temporaries.cancel_scope.cancel()
            await self._temporaries_done.wait()
        for child in reversed(self._children):
            await self._stop(child, ActorState.STOPPING)

    # --- temporaries --------------------------------------------------------------------

    async def _hold_temporaries(self, task_status: trio.TaskStatus[None]) -> None:
        """Own the nursery spawn() starts into; it lives as long as the supervisor runs."""
        self._temporaries_done = done = trio.Event()
        try:
            async with trio.open_nursery() as temporaries:
                self._temporaries = temporaries
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._temporaries = None
            done.set()


def _check_unique(ids: list[str]) -> None:
    seen: set[str] = set()
    for child_id in ids:
        if child_id in seen:
            raise ValueError(f"duplicate child id {child_id!r}")
        seen.add(child_id)
