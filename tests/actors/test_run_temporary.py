"""ActorSystem.run_temporary: a temporary child run inline in the caller's task (one per
accepted socket, say), placed under its parent in the tree, its failure contained."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from iii_trio.actors import (
    Actor,
    ActorSystem,
    ActorTreeNode,
    ChildSpec,
    Supervisor,
    current_actor_id,
    current_system,
)
from tests.actors.probes import DEADLINE, Crash, Lab, Probe, Root, settle


class Acceptor(Actor):
    """Like a listener: takes each accepted actor from its mailbox and serves it in a task
    of its own nursery, running it there inline as a temporary child, and notes when that
    task carries on afterwards."""

    kind = "acceptor"

    def __init__(self, name: str, lab: Lab) -> None:
        super().__init__(name, mailbox_capacity=8)
        self.lab = lab

    def accept(self, actor: Actor) -> None:
        assert self.mailbox is not None
        assert self.mailbox.try_send(actor)

    async def _serve(self, actor: Actor) -> None:
        await current_system().run_temporary(actor, current_actor_id())
        self.lab.record(f"after {actor.name}")

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        assert self.mailbox is not None
        async with trio.open_nursery() as nursery:
            task_status.started()
            async for actor in self.mailbox:
                nursery.start_soon(self._serve, actor)


def shape(nodes: Sequence[ActorTreeNode]) -> list[Any]:
    return [(f"{n.actor.kind}:{n.actor.name}", shape(n.children)) for n in nodes]


async def test_temporaries_appear_under_their_parent_while_they_run(
    autojump_clock: MockClock,
) -> None:
    lab, system = Lab(), ActorSystem()
    acceptor = Acceptor("port", lab)
    supervisor = Supervisor("sup", [ChildSpec("port", lambda: acceptor)])
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            for name in ("c1", "c2"):
                acceptor.accept(Probe(name, lab))
                await settle()
            assert shape(system.tree()) == [
                ("supervisor:sup", [("acceptor:port", [("probe:c1", []), ("probe:c2", [])])])
            ]
            [port_id] = supervisor.children()
            assert {row.parent for row in system.rows() if row.kind == "probe"} == {port_id}

            await lab.exit("c1")
            assert shape(system.tree()) == [
                ("supervisor:sup", [("acceptor:port", [("probe:c2", [])])])
            ]
            assert lab.take() == ["start c1", "start c2", "exit c1", "after c1"]
            root.cancel()


async def test_a_failing_temporary_is_logged_and_fails_nothing_else(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    lab, system = Lab(), ActorSystem()
    acceptor = Acceptor("port", lab)
    supervisor = Supervisor("sup", [ChildSpec("port", lambda: acceptor)], max_restarts=0)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            acceptor.accept(Probe("bad", lab))
            acceptor.accept(Probe("good", lab))
            await settle()
            bad_id = next(row.id for row in system.rows() if row.name == "bad")

            with caplog.at_level(logging.ERROR, logger="iii_trio.actors"):
                await lab.fail("bad")
            [record] = caplog.records
            assert record.getMessage() == f"{bad_id} failed"
            assert record.exc_info is not None
            assert isinstance(record.exc_info[1], Crash)

            # The serving task carries on; the parent is neither failed nor restarted (its
            # supervisor allows no restart at all), and the sibling still runs.
            assert sorted(lab.take()) == ["after bad", "fail bad", "start bad", "start good"]
            [port_id] = supervisor.children()
            port = system.info(port_id)
            assert port is not None
            assert port.restarts == 0
            assert [row.name for row in system.rows()] == ["sup", "port", "good"]
            assert not root.done.is_set()
            root.cancel()


async def test_cancellation_is_not_contained(autojump_clock: MockClock) -> None:
    """Stopping the parent cancels its temporaries, and the task that ran one does not
    carry on as if it had ended by itself."""
    lab, system = Lab(), ActorSystem()
    acceptor = Acceptor("port", lab)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, acceptor)
            acceptor.accept(Probe("c", lab))
            await settle()
            root.cancel()
            assert await root.ended() is None
    assert lab.take() == ["start c", "cancelled c"]
    assert len(system) == 0
