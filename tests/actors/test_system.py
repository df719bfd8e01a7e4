"""The actor system: ids, rows and their states, the tree, and current_actor()."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from iii_trio.actors import (
    Actor,
    ActorSnapshot,
    ActorState,
    ActorSystem,
    ActorTreeNode,
    MailboxStatistics,
    current_actor,
    current_actor_id,
    current_system,
)
from tests.actors.probes import DEADLINE, Crash, settle


class Gate(Actor):
    """Reports started when ``ready`` is set (unless ``report`` is False), then runs until
    ``release`` is set, and fails if ``fail`` is set."""

    kind = "gate"

    def __init__(self, name: str, *, report: bool = True, mailbox_capacity: int = 0) -> None:
        super().__init__(name, mailbox_capacity=mailbox_capacity)
        self.report = report
        self.fail = False
        self.ready = trio.Event()
        self.release = trio.Event()

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        if self.report:
            await self.ready.wait()
            task_status.started(self.name)
        await self.release.wait()
        if self.fail:
            raise Crash(self.name)


def only_id(system: ActorSystem) -> str:
    [row] = system.rows()
    actor_id: str = row.id
    return actor_id


def test_new_ids_have_one_format_and_are_unique() -> None:
    system = ActorSystem()
    ids = [system.new_id("invocation", "math.add") for _ in range(1000)]
    assert all(re.fullmatch(r"invocation:math\.add#[0-9a-f]{6}", i) for i in ids)
    assert len(set(ids)) == 1000


async def test_new_ids_wrap_around_but_skip_ids_of_live_actors(autojump_clock: MockClock) -> None:
    system = ActorSystem()
    live = Gate("x", report=False)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(system.run_actor, live, None)  # gets x#000001
            await settle()
            assert only_id(system) == "gate:x#000001"
            system._serial = 0xFFFFFE  # as if 16 million ids had been handed out
            assert system.new_id("gate", "x") == "gate:x#ffffff"
            assert system.new_id("gate", "x") == "gate:x#000000"
            assert system.new_id("gate", "x") == "gate:x#000002"  # 000001 is live
            live.release.set()


async def test_a_row_is_starting_until_started_then_running_then_removed(
    autojump_clock: MockClock,
) -> None:
    system = ActorSystem(wall_clock_ms=lambda: 1_700_000_000_000)
    gate = Gate("g")
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(nursery.start, system.run_actor, gate, None)
            await settle()
            info = system.info(only_id(system))
            assert info is not None
            assert info.state is ActorState.STARTING
            assert info.started_at_ms == 1_700_000_000_000
            gate.ready.set()
            await settle()
            assert system.rows()[0].state is ActorState.RUNNING
            gate.release.set()
        assert len(system) == 0
        assert system.rows() == []


async def test_nursery_start_returns_what_the_actor_reported(autojump_clock: MockClock) -> None:
    system = ActorSystem()
    gate = Gate("g")
    gate.ready.set()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            assert await nursery.start(system.run_actor, gate, None) == "g"
            gate.release.set()


async def test_an_actor_started_with_start_soon_is_running_without_reporting(
    autojump_clock: MockClock,
) -> None:
    system = ActorSystem()
    gate = Gate("g", report=False)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(system.run_actor, gate, None)
            await settle()
            info = system.info(only_id(system))
            assert info is not None
            assert info.state is ActorState.RUNNING
            gate.release.set()


async def test_exceptions_propagate_and_the_row_is_removed(autojump_clock: MockClock) -> None:
    system = ActorSystem()
    gate = Gate("g", report=False)
    gate.fail = True
    gate.release.set()
    with trio.fail_after(DEADLINE), pytest.raises(Crash):
        await system.run_actor(gate, None)
    assert len(system) == 0


async def test_rows_describe_each_live_actor(autojump_clock: MockClock) -> None:
    system = ActorSystem(wall_clock_ms=lambda: 1234)
    gate = Gate("g", report=False, mailbox_capacity=4)
    assert gate.mailbox is not None
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: system.run_actor(gate, "sup:root#00000a", actor_id="gate:g#0000ff")
            )
            await settle()
            gate.mailbox.try_send("m1")
            gate.mailbox.try_send("m2")
            gate.mailbox.receive_nowait()
            assert system.rows() == [
                ActorSnapshot(
                    id="gate:g#0000ff",
                    kind="gate",
                    name="g",
                    parent="sup:root#00000a",
                    state=ActorState.RUNNING,
                    started_at_ms=1234,
                    restarts=0,
                    mailbox=MailboxStatistics(depth=1, peak=2, capacity=4, waiting_senders=0),
                )
            ]
            assert system.info("gate:g#0000ff") == system.rows()[0]
            assert system.actor("gate:g#0000ff") is gate
            gate.release.set()


async def test_set_state_changes_a_live_row_and_ignores_unknown_ids(
    autojump_clock: MockClock,
) -> None:
    system = ActorSystem()
    gate = Gate("g", report=False)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(system.run_actor, gate, None)
            await settle()
            actor_id = only_id(system)
            system.set_state(actor_id, ActorState.STOPPING)
            system.set_state("gate:nobody#000000", ActorState.STOPPING)
            assert system.rows()[0].state is ActorState.STOPPING
            assert len(system) == 1
            gate.release.set()


async def test_tree_nests_children_and_rows_list_each_parent_before_its_subtree(
    autojump_clock: MockClock,
) -> None:
    system = ActorSystem()
    gates = {name: Gate(name, report=False) for name in ["root", "a", "b", "a1", "orphan"]}

    async def run(name: str, parent: str | None) -> None:
        await system.run_actor(gates[name], parent, actor_id=f"gate:{name}#000000")

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            # a1 starts after b, yet is listed right after its parent a.
            for name, parent in [("root", None), ("a", "root"), ("b", "root"), ("a1", "a")]:
                nursery.start_soon(run, name, None if parent is None else f"gate:{parent}#000000")
                await settle()
            # A row whose parent is not a live actor is a root of its own.
            nursery.start_soon(run, "orphan", "gate:gone#000000")
            await settle()

            assert [row.name for row in system.rows()] == ["root", "a", "a1", "b", "orphan"]

            def shape(nodes: Sequence[ActorTreeNode]) -> list[Any]:
                return [(node.actor.name, shape(node.children)) for node in nodes]

            def depth_first(nodes: Sequence[ActorTreeNode]) -> list[ActorSnapshot]:
                return [row for n in nodes for row in [n.actor, *depth_first(n.children)]]

            tree = system.tree()
            assert shape(tree) == [
                ("root", [("a", [("a1", [])]), ("b", [])]),
                ("orphan", []),
            ]
            assert tree[0].children[0].actor.parent == "gate:root#000000"
            # The nodes hold the same snapshots rows() lists, in the same order.
            assert depth_first(tree) == system.rows()
            for gate in gates.values():
                gate.release.set()


class WhoAmI(Actor):
    kind = "probe"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.seen: dict[str, object] = {}

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        self.seen["actor"] = current_actor()
        self.seen["id"] = current_actor_id()
        self.seen["system"] = current_system()

        async def helper() -> None:
            self.seen["helper actor"] = current_actor()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(helper)


async def test_current_actor_inside_an_actor_and_the_tasks_it_starts(
    autojump_clock: MockClock,
) -> None:
    system = ActorSystem()
    actor = WhoAmI("me")
    with trio.fail_after(DEADLINE):
        await system.run_actor(actor, None, actor_id="probe:me#00abcd")
    assert actor.seen == {
        "actor": actor,
        "id": "probe:me#00abcd",
        "system": system,
        "helper actor": actor,
    }


async def test_awaiting_run_actor_inline_restores_the_current_actor(
    autojump_clock: MockClock,
) -> None:
    system = ActorSystem()
    inner = WhoAmI("inner")
    after: list[Actor] = []

    class Outer(Actor):
        async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
            await system.run_actor(inner, current_actor_id())
            after.append(current_actor())

    outer = Outer("outer")
    with trio.fail_after(DEADLINE):
        await system.run_actor(outer, None)
    assert inner.seen["actor"] is inner
    assert after == [outer]


@pytest.mark.parametrize("accessor", [current_actor, current_actor_id, current_system])
async def test_current_accessors_explain_what_is_missing_outside_an_actor(
    accessor: Any, autojump_clock: MockClock
) -> None:
    with pytest.raises(RuntimeError, match="outside any actor"):
        accessor()
