"""Supervisor lifecycle: start order, reverse stop order, graceful stop then cancellation,
children added and removed at runtime, spawn()ed temporaries, and the resulting tree."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from iii_trio.actors import (
    Actor,
    ActorState,
    ActorSystem,
    ActorTreeNode,
    ChildSpec,
    Restart,
    Supervisor,
    current_actor,
)
from tests.actors.probes import DEADLINE, Crash, Lab, Probe, Root, Stubborn, Worker, rows_of, settle


class SlowStarter(Actor):
    """Takes a second of (virtual) time to get ready."""

    def __init__(self, name: str, lab: Lab) -> None:
        super().__init__(name)
        self.lab = lab

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        self.lab.record(f"init {self.name}")
        await trio.sleep(1)
        self.lab.record(f"ready {self.name}")
        task_status.started()
        await trio.sleep_forever()


class FailsToStart(Actor):
    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        raise Crash(f"{self.name} cannot start")


def abc(lab: Lab, probe: type[Probe] = Worker, shutdown_timeout: float = 5.0) -> Supervisor:
    specs = [lab.spec(n, probe=probe, shutdown_timeout=shutdown_timeout) for n in "abc"]
    return Supervisor("sup", specs)


async def test_each_child_starts_only_after_the_previous_one_is_ready(
    autojump_clock: MockClock,
) -> None:
    lab, system = Lab(), ActorSystem()
    specs = [ChildSpec(n, functools.partial(SlowStarter, n, lab)) for n in "ab"]
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, Supervisor("sup", specs))
            # The supervisor reports started only once every child has.
            assert trio.current_time() == 2
            assert lab.take() == ["init a", "ready a", "init b", "ready b"]
            assert [row.state for row in system.rows()] == [ActorState.RUNNING] * 3
            root.cancel()


async def test_request_stop_stops_children_in_reverse_order_and_returns(
    autojump_clock: MockClock,
) -> None:
    lab, system = Lab(), ActorSystem()
    supervisor = abc(lab)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            supervisor.request_stop()
            assert await root.ended() is None
    assert lab.take() == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
    assert len(system) == 0


async def test_outer_cancellation_stops_children_one_by_one_in_reverse_order(
    autojump_clock: MockClock,
) -> None:
    lab, system = Lab(), ActorSystem()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, abc(lab))
            lab.take()
            root.cancel()
            assert await root.ended() is None
    # Each child was asked to stop (and did), none was cancelled along with the parent.
    assert lab.take() == ["stop c", "stop b", "stop a"]
    assert len(system) == 0


async def test_a_child_ignoring_request_stop_is_cancelled_after_its_shutdown_timeout(
    autojump_clock: MockClock,
) -> None:
    lab, system = Lab(), ActorSystem()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, abc(lab, Stubborn, shutdown_timeout=2))
            lab.take()
            root.cancel()
            await root.ended()
    assert [(event, lab.at[event]) for event in lab.take()] == [
        ("asked c", 0),
        ("cancelled c", 2),
        ("asked b", 2),
        ("cancelled b", 4),
        ("asked a", 4),
        ("cancelled a", 6),
    ]


async def test_a_child_that_cannot_hear_request_stop_is_cancelled_at_once(
    autojump_clock: MockClock,
) -> None:
    lab, system = Lab(), ActorSystem()
    supervisor = abc(lab, Probe, shutdown_timeout=30)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            lab.take()
            supervisor.request_stop()
            await root.ended()
    assert lab.take() == ["cancelled c", "cancelled b", "cancelled a"]
    assert trio.current_time() == 0


async def test_rows_show_stopping_while_children_are_being_stopped(
    autojump_clock: MockClock,
) -> None:
    lab, system = Lab(), ActorSystem()
    supervisor = Supervisor("sup", [lab.spec("a"), lab.spec("s", probe=Stubborn)])
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            supervisor.request_stop()
            await settle()  # s ignores the request; the supervisor waits for it
            assert {row.name: row.state for row in system.rows()} == {
                "sup": ActorState.STOPPING,
                "s": ActorState.STOPPING,
                "a": ActorState.RUNNING,  # not yet: a is stopped after s
            }
            await root.ended()
    worker = lab.live["a"]
    assert isinstance(worker, Worker)
    assert worker.stopped_as is ActorState.STOPPING


async def test_a_child_failing_to_start_fails_the_supervisor_start(
    autojump_clock: MockClock,
) -> None:
    lab, system = Lab(), ActorSystem()
    specs = [lab.spec("a"), lab.spec("b"), ChildSpec("x", lambda: FailsToStart("x"))]
    specs.append(lab.spec("never"))
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            # The child's own error, not wrapped in an ExceptionGroup.
            with pytest.raises(Crash, match="x cannot start"):
                await nursery.start(system.run_actor, Supervisor("sup", specs), None)
    assert lab.take() == ["start a", "start b", "stop b", "stop a"]
    assert len(system) == 0


async def test_start_child_appends_a_child_and_stop_child_removes_it_for_good(
    autojump_clock: MockClock,
) -> None:
    lab, system = Lab(), ActorSystem()
    supervisor = abc(lab)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            d = await supervisor.start_child(lab.spec("d"))
            assert d is lab.live["d"]
            a_id, b_id = supervisor.children()[:2]
            await supervisor.stop_child("b")  # by spec id
            await supervisor.stop_child(a_id)  # or by actor id
            await settle()
            assert lab.take() == ["start a", "start b", "start c", "start d", "stop b", "stop a"]
            names = [row.name for row in rows_of(system, supervisor.children())]
            assert names == ["c", "d"]
            assert system.info(b_id) is None
            with pytest.raises(KeyError):
                await supervisor.stop_child("b")
            with pytest.raises(ValueError, match="duplicate"):
                await supervisor.start_child(lab.spec("c"))
            root.cancel()
    assert lab.take() == ["stop d", "stop c"]


async def test_start_child_raises_when_the_child_fails_to_start_and_does_not_add_it(
    autojump_clock: MockClock,
) -> None:
    lab, system = Lab(), ActorSystem()
    supervisor = Supervisor("sup", [lab.spec("a")])
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            with pytest.raises(Crash, match="x cannot start"):
                await supervisor.start_child(ChildSpec("x", lambda: FailsToStart("x")))
            assert len(supervisor.children()) == 1
            assert not root.done.is_set()
            root.cancel()


async def test_start_child_and_spawn_need_a_running_supervisor(
    autojump_clock: MockClock,
) -> None:
    lab, system = Lab(), ActorSystem()
    supervisor = Supervisor("sup", [lab.spec("a")])
    with pytest.raises(RuntimeError, match="not running"):
        await supervisor.start_child(lab.spec("b"))
    with pytest.raises(RuntimeError, match="not running"):
        supervisor.spawn(Probe("t", lab))
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await Root.start(nursery, system, supervisor)
            supervisor.request_stop()
    with pytest.raises(RuntimeError, match="not running"):
        supervisor.spawn(Probe("t", lab))


def test_duplicate_child_ids_are_refused() -> None:
    lab = Lab()
    with pytest.raises(ValueError, match="duplicate child id 'a'"):
        Supervisor("sup", [lab.spec("a"), lab.spec("a")])


# --- spawn() ------------------------------------------------------------------------------


async def test_a_failing_temporary_is_logged_removed_and_affects_no_sibling(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    lab, system = Lab(), ActorSystem()
    supervisor = Supervisor("sup", [lab.spec("a")])
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            for name in ("t1", "t2"):
                supervisor.spawn(Probe(name, lab))
            await settle()
            sup_id = system.rows()[0].id
            rows = {row.name: row for row in system.rows()}
            assert {rows[n].parent for n in ("a", "t1", "t2")} == {sup_id}
            t1_id = rows["t1"].id

            with caplog.at_level(logging.ERROR, logger="iii_trio.actors"):
                await lab.fail("t1")
            assert [r.getMessage() for r in caplog.records] == [f"{t1_id} failed"]
            assert [row.name for row in system.rows()] == ["sup", "a", "t2"]

            await lab.exit("t2")
            assert [row.name for row in system.rows()] == ["sup", "a"]
            log = lab.take()
            # trio does not promise an order between tasks started in the same step.
            assert sorted(log[1:3]) == ["start t1", "start t2"]
            assert [log[0], *log[3:]] == ["start a", "fail t1", "exit t2"]
            assert not root.done.is_set()
            root.cancel()


async def test_temporaries_are_cancelled_before_the_spec_children_stop(
    autojump_clock: MockClock,
) -> None:
    lab, system = Lab(), ActorSystem()
    supervisor = Supervisor("sup", [lab.spec("a"), lab.spec("b")])
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            supervisor.spawn(Probe("t1", lab))
            supervisor.spawn(Stubborn("t2", lab))  # temporaries are not asked, just cancelled
            await settle()
            lab.take()
            supervisor.request_stop()
            await root.ended()
    stops = lab.take()
    assert sorted(stops[:2]) == ["cancelled t1", "cancelled t2"]
    assert stops[2:] == ["stop b", "stop a"]


async def test_a_temporary_is_the_current_actor_of_its_task(autojump_clock: MockClock) -> None:
    system = ActorSystem()
    seen: list[Actor] = []

    class Temp(Actor):
        async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
            seen.append(current_actor())

    supervisor = Supervisor("sup")
    temp = Temp("temp")
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            supervisor.spawn(temp)
            await settle()
            root.cancel()
    assert seen == [temp]


async def test_the_tree_of_nested_supervisors_and_temporaries(autojump_clock: MockClock) -> None:
    lab, system = Lab(), ActorSystem()
    inner = Supervisor("inner", [lab.spec("w")])
    top = Supervisor(
        "top", [ChildSpec("inner", lambda: inner), lab.spec("t", restart=Restart.TRANSIENT)]
    )
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, top)
            inner.spawn(Probe("job", lab))
            await settle()

            def shape(nodes: Sequence[ActorTreeNode]) -> list[Any]:
                return [(f"{n.actor.kind}:{n.actor.name}", shape(n.children)) for n in nodes]

            assert shape(system.tree()) == [
                (
                    "supervisor:top",
                    [
                        ("supervisor:inner", [("worker:w", []), ("probe:job", [])]),
                        ("worker:t", []),
                    ],
                )
            ]
            assert [row.name for row in system.rows()] == ["top", "inner", "w", "job", "t"]
            assert top.children() == [system.rows()[1].id, system.rows()[4].id]
            root.cancel()
