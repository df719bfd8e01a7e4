"""OTP supervision: strategies, restart types, restart ids and counts, intensity and
escalation. Start/stop order and shutdown are in test_supervisor_lifecycle.py."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from iii_trio.actors import (
    ActorState,
    ActorSystem,
    ChildSpec,
    Restart,
    RestartIntensityExceeded,
    Strategy,
    Supervisor,
)
from tests.actors.probes import DEADLINE, Crash, Lab, Probe, Root, Worker, rows_of


def abc(lab: Lab, strategy: Strategy, probe: type[Probe] = Worker) -> Supervisor:
    return Supervisor("sup", [lab.spec(n, probe=probe) for n in "abc"], strategy=strategy)


@pytest.mark.parametrize(
    ("strategy", "after_b_fails"),
    [
        (Strategy.ONE_FOR_ONE, ["fail b", "start b"]),
        (
            Strategy.ONE_FOR_ALL,
            ["fail b", "stop c", "stop a", "start a", "start b", "start c"],
        ),
        (Strategy.REST_FOR_ONE, ["fail b", "stop c", "start b", "start c"]),
    ],
)
async def test_strategies_restart_the_right_children_in_order(
    strategy: Strategy, after_b_fails: list[str], autojump_clock: MockClock
) -> None:
    lab, system = Lab(), ActorSystem()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, abc(lab, strategy))
            assert lab.take() == ["start a", "start b", "start c"]
            await lab.fail("b")
            assert lab.take() == after_b_fails
            root.cancel()
        assert await root.ended() is None


@pytest.mark.parametrize(
    ("strategy", "restarted"),
    [(Strategy.ONE_FOR_ALL, ["a", "c"]), (Strategy.REST_FOR_ONE, ["c"])],
)
async def test_siblings_stopped_for_a_restart_show_restarting(
    strategy: Strategy, restarted: list[str], autojump_clock: MockClock
) -> None:
    lab, system = Lab(), ActorSystem()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, abc(lab, strategy))
            siblings = {name: lab.live[name] for name in "ac"}
            await lab.fail("b")
            stopped_as = {
                name: probe.stopped_as
                for name, probe in siblings.items()
                if isinstance(probe, Worker) and probe.stopped_as is not None
            }
            assert stopped_as == {name: ActorState.RESTARTING for name in restarted}
            root.cancel()


async def test_siblings_cancelled_for_a_restart_do_not_count_as_failures(
    autojump_clock: MockClock,
) -> None:
    """Probes cannot hear request_stop(), so ONE_FOR_ALL cancels them; a child's
    trio.Cancelled must not be taken for an exit that needs another restart."""
    lab, system = Lab(), ActorSystem()
    supervisor = abc(lab, Strategy.ONE_FOR_ALL, probe=Probe)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            lab.take()
            await lab.fail("b")
            assert lab.take() == [
                "fail b",
                "cancelled c",
                "cancelled a",
                "start a",
                "start b",
                "start c",
            ]
            restarts = [row.restarts for row in rows_of(system, supervisor.children())]
            assert restarts == [1, 1, 1]
            root.cancel()


@pytest.mark.parametrize(
    ("restart", "how", "restarted"),
    [
        (Restart.PERMANENT, "exit", True),
        (Restart.PERMANENT, "fail", True),
        (Restart.TRANSIENT, "exit", False),
        (Restart.TRANSIENT, "fail", True),
        (Restart.TEMPORARY, "exit", False),
        (Restart.TEMPORARY, "fail", False),
    ],
)
async def test_restart_types(
    restart: Restart, how: str, restarted: bool, autojump_clock: MockClock
) -> None:
    lab, system = Lab(), ActorSystem()
    supervisor = Supervisor("sup", [lab.spec("x", restart), lab.spec("y")])
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            lab.take()
            await (lab.fail("x") if how == "fail" else lab.exit("x"))
            # A child that is not restarted is just removed: no strategy, y untouched.
            assert lab.take() == [f"{how} x", *(["start x"] if restarted else [])]
            names = [row.name for row in rows_of(system, supervisor.children())]
            assert names == (["x", "y"] if restarted else ["y"])
            assert sorted(row.name for row in system.rows()) == sorted(["sup", *names])
            root.cancel()


async def test_a_restarted_child_keeps_its_id_and_its_row_counts_restarts(
    autojump_clock: MockClock,
) -> None:
    lab, system = Lab(), ActorSystem()
    supervisor = abc(lab, Strategy.ONE_FOR_ONE)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            ids = supervisor.children()
            first_b = lab.live["b"]
            await lab.fail("b")
            await lab.exit("b")
            assert lab.live["b"] is not first_b  # a fresh instance from the factory
            assert supervisor.children() == ids
            rows = {row.id: row for row in system.rows()}
            assert [rows[i].restarts for i in ids] == [0, 2, 0]
            assert rows[ids[1]].state is ActorState.RUNNING
            assert rows[ids[1]].parent == system.rows()[0].id
            root.cancel()


async def test_too_many_restarts_make_the_supervisor_give_up_and_stop_everyone(
    autojump_clock: MockClock,
) -> None:
    lab, system = Lab(), ActorSystem()
    supervisor = Supervisor(
        "sup", [lab.spec("a"), lab.spec("b"), lab.spec("c")], max_restarts=2, within_seconds=5
    )
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            await lab.fail("b")
            await lab.fail("b")
            assert not root.done.is_set()
            lab.take()
            await lab.fail("b")  # the third restart within 5 s is one too many
            error = await root.ended()
    assert isinstance(error, RestartIntensityExceeded)
    assert error.supervisor == "sup"
    assert isinstance(error.__cause__, Crash)
    assert lab.take() == ["fail b", "stop c", "stop a"]
    assert len(system) == 0


async def test_restarts_spread_out_in_time_stay_within_intensity(autojump_clock: MockClock) -> None:
    lab, system = Lab(), ActorSystem()
    supervisor = Supervisor("sup", [lab.spec("a")], max_restarts=2, within_seconds=5)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            for _ in range(6):
                await lab.fail("a")
                await trio.sleep(3)  # at most two restarts in any 5 s window
            assert lab.log.count("start a") == 7
            await lab.fail("a")  # at t=18: restarts at 15 and 18 in the window
            assert not root.done.is_set()
            await lab.fail("a")  # at t=18 again: a third within 5 s is one too many
            assert isinstance(await root.ended(), RestartIntensityExceeded)
            assert trio.current_time() == 18


async def test_a_permanent_child_that_keeps_exiting_normally_also_exhausts_intensity(
    autojump_clock: MockClock,
) -> None:
    lab, system = Lab(), ActorSystem()
    supervisor = Supervisor("sup", [lab.spec("a")], max_restarts=1)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            await lab.exit("a")
            await lab.exit("a")
            error = await root.ended()
    assert isinstance(error, RestartIntensityExceeded)
    assert error.__cause__ is None


async def test_a_child_that_fails_while_restarting_counts_as_another_restart(
    autojump_clock: MockClock,
) -> None:
    lab, system = Lab(), ActorSystem()
    starts = 0

    def flaky() -> Worker:
        nonlocal starts
        starts += 1
        if starts > 1:
            raise Crash("factory")
        return Worker("a", lab)

    supervisor = Supervisor("sup", [ChildSpec("a", flaky)], max_restarts=3)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            await lab.fail("a")
            error = await root.ended()
    assert isinstance(error, RestartIntensityExceeded)
    assert isinstance(error.__cause__, Crash)
    assert str(error.__cause__) == "factory"
    assert starts == 1 + 3  # the first start and 3 restarts; a 4th would breach max_restarts


async def test_escalation_up_the_tree_until_the_top_gives_up(autojump_clock: MockClock) -> None:
    """w fails; inner (max 0) gives up; mid restarts inner (its first restart). w fails
    again; inner gives up again; mid (max 1) gives up; top (max 0) gives up."""
    lab, system = Lab(), ActorSystem()

    def inner() -> Supervisor:
        return Supervisor("inner", [lab.spec("w")], max_restarts=0)

    def mid() -> Supervisor:
        return Supervisor(
            "mid", [ChildSpec("inner", inner), lab.spec("m")], max_restarts=1, within_seconds=60
        )

    top = Supervisor("top", [ChildSpec("mid", mid), lab.spec("t")], max_restarts=0)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, top)
            assert lab.take() == ["start w", "start m", "start t"]
            mid_id = top.children()[0]
            inner_id = next(row.id for row in system.rows() if row.name == "inner")

            await lab.fail("w")
            assert lab.take() == ["fail w", "start w"]
            inner_row, mid_row = system.info(inner_id), system.info(mid_id)
            assert inner_row is not None
            assert inner_row.restarts == 1
            assert mid_row is not None
            assert mid_row.restarts == 0

            await lab.fail("w")
            error = await root.ended()
    chain: list[str] = []
    cause: BaseException | None = error
    while isinstance(cause, RestartIntensityExceeded):
        chain.append(cause.supervisor)
        cause = cause.__cause__
    assert chain == ["top", "mid", "inner"]
    assert isinstance(cause, Crash)
    # Each level stopped its remaining children, last started first.
    assert lab.take() == ["fail w", "stop m", "stop t"]
    assert len(system) == 0
