"""The fresh-per-restart contract: every restart gets a new actor from the factory, unless
the spec declares that the child is reused (``ChildSpec.reusing`` / ``reuse=True``)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import MockClock

from iii_trio.actors import (
    Actor,
    ActorSystem,
    ChildSpec,
    Restart,
    RestartIntensityExceeded,
    Supervisor,
)
from tests.actors.probes import DEADLINE, Crash, Lab, Root, Worker, settle


async def test_a_factory_that_returns_the_previous_incarnation_is_refused(
    autojump_clock: MockClock,
) -> None:
    lab, system = Lab(), ActorSystem()
    same = Worker("a", lab)
    calls = 0

    def factory() -> Worker:
        nonlocal calls
        calls += 1
        return same

    supervisor = Supervisor("sup", [ChildSpec("a", factory)], max_restarts=2)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            await lab.fail("a")
            error = await root.ended()
    # The first start is fine; each restart is refused and counts as a failed restart,
    # until the restart intensity is exceeded.
    assert lab.take() == ["start a", "fail a"]
    assert calls == 1 + 2
    assert isinstance(error, RestartIntensityExceeded)
    assert isinstance(error.__cause__, RuntimeError)
    assert "returned the actor it ran before" in str(error.__cause__)
    assert "ChildSpec.reusing()" in str(error.__cause__)


class Reentrant(Actor):
    """Each run starts from a fresh event, so running the same object again is safe."""

    kind = "worker"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.runs = 0
        self._crash = trio.Event()

    def crash(self) -> None:
        self._crash.set()

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        self.runs += 1
        self._crash = crash = trio.Event()
        task_status.started()
        await crash.wait()
        raise Crash(self.name)


@pytest.mark.parametrize("declared", ["reusing", "reuse=True"])
async def test_a_declared_reused_child_runs_the_same_instance_again(
    declared: str, autojump_clock: MockClock
) -> None:
    system = ActorSystem()
    same = Reentrant("a")
    if declared == "reusing":
        spec = ChildSpec.reusing("a", same, restart=Restart.TRANSIENT, shutdown_timeout=1.0)
    else:
        spec = ChildSpec(
            "a", lambda: same, restart=Restart.TRANSIENT, shutdown_timeout=1.0, reuse=True
        )
    assert (spec.reuse, spec.restart, spec.shutdown_timeout) == (True, Restart.TRANSIENT, 1.0)
    supervisor = Supervisor("sup", [spec])
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            [actor_id] = supervisor.children()
            for restarts in (1, 2):
                same.crash()
                await settle()
                assert same.runs == 1 + restarts
                assert supervisor.children() == [actor_id]
                assert system.actor(actor_id) is same
                info = system.info(actor_id)
                assert info is not None
                assert info.restarts == restarts
            assert not root.done.is_set()
            root.cancel()


async def test_a_child_added_again_may_bring_back_an_actor_it_ran_before(
    autojump_clock: MockClock,
) -> None:
    """Only the incarnation that just ended is refused: a child stopped, removed and added
    again is a new child, with no previous incarnation."""
    system = ActorSystem()
    same = Reentrant("b")
    supervisor = Supervisor("sup")
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            for _ in range(2):
                assert await supervisor.start_child(ChildSpec("b", lambda: same)) is same
                await supervisor.stop_child("b")
            assert same.runs == 2
            root.cancel()
