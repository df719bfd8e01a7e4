"""Scriptable actors and a background runner for the actor tests.

Probes append what happens to them to a shared log ("start a", "fail b", "stop c",
"cancelled c", ...), so tests can assert exact sequences of starts and stops.
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from iii_trio.actors import (
    Actor,
    ActorSnapshot,
    ActorState,
    ActorSystem,
    ChildSpec,
    Restart,
    current_actor_id,
    current_system,
)

# Generous: on the autojump clock (every async test here uses it) a deadlock reaches this
# deadline in virtual time, at once.
DEADLINE = 600


class Crash(Exception):
    pass


class Lab:
    """The shared event log, the virtual time of each event, and the live probes."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.at: dict[str, float] = {}
        self.live: dict[str, Probe] = {}

    def record(self, event: str) -> None:
        self.log.append(event)
        self.at[event] = trio.current_time()

    def take(self) -> list[str]:
        """The events since the last take()."""
        taken, self.log = self.log, []
        return taken

    def spec(
        self,
        name: str,
        restart: Restart = Restart.PERMANENT,
        *,
        probe: type[Probe] | None = None,
        shutdown_timeout: float = 5.0,
    ) -> ChildSpec:
        cls = Worker if probe is None else probe
        return ChildSpec(
            name, lambda: cls(name, self), restart=restart, shutdown_timeout=shutdown_timeout
        )

    async def fail(self, name: str) -> None:
        """Make the live probe ``name`` raise, then let the supervisors react."""
        self.live[name].command("fail")
        await settle()

    async def exit(self, name: str) -> None:
        """Make the live probe ``name`` return normally, then let the supervisors react."""
        self.live[name].command("exit")
        await settle()


def rows_of(system: ActorSystem, actor_ids: list[str]) -> list[ActorSnapshot]:
    """The rows of these (live) actors, in this order."""
    rows = {row.id: row for row in system.rows()}
    return [rows[actor_id] for actor_id in actor_ids]


async def settle() -> None:
    """Until every task is blocked (wakes before the autojump clock moves time)."""
    await trio.testing.wait_all_tasks_blocked()


class Probe(Actor):
    """Runs until told to fail or exit. Does not override request_stop(), so a supervisor
    stops it by cancelling it."""

    kind = "probe"

    def __init__(self, name: str, lab: Lab) -> None:
        super().__init__(name)
        self.lab = lab
        self.actor_id = ""
        self.system: ActorSystem | None = None
        self._command = ""
        self._told = trio.Event()

    def command(self, command: str) -> None:
        self._command = command
        self._told.set()

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        self.actor_id = current_actor_id()
        self.system = current_system()
        self.lab.live[self.name] = self
        self.lab.record(f"start {self.name}")
        task_status.started()
        try:
            await self._told.wait()
        except trio.Cancelled:
            self.lab.record(f"cancelled {self.name}")
            raise
        self.lab.record(f"{self._command} {self.name}")
        if self._command == "fail":
            raise Crash(self.name)


class Worker(Probe):
    """Returns normally when asked to stop, and remembers its row's state at that moment."""

    kind = "worker"

    stopped_as: ActorState | None = None

    def request_stop(self) -> None:
        assert self.system is not None
        row = self.system.info(self.actor_id)
        self.stopped_as = row.state if row is not None else None
        self.command("stop")


class Stubborn(Probe):
    """Hears stop requests and ignores them: only cancellation stops it."""

    def request_stop(self) -> None:
        self.lab.record(f"asked {self.name}")


class Root:
    """Runs an actor as a root of ``system`` in a background task and keeps its outcome,
    so a test can drive it and then look at how it ended (an exception raised through a
    nursery would arrive wrapped in an ExceptionGroup)."""

    def __init__(self, system: ActorSystem, actor: Actor) -> None:
        self.system = system
        self.actor = actor
        self.error: Exception | None = None
        self.done = trio.Event()
        self._scope = trio.CancelScope()

    @classmethod
    async def start(cls, nursery: trio.Nursery, system: ActorSystem, actor: Actor) -> Root:
        root = cls(system, actor)
        await nursery.start(root._run)
        return root

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        try:
            with self._scope:
                await self.system.run_actor(self.actor, None, task_status=task_status)
        except Exception as exc:
            self.error = exc
        finally:
            self.done.set()

    def cancel(self) -> None:
        self._scope.cancel()

    async def ended(self) -> Exception | None:
        """Wait until the actor's body has returned; its exception, if any."""
        await self.done.wait()
        return self.error
