"""statistics() in trio's style: frozen records of what an actor and a supervisor bound."""

from __future__ import annotations

import attrs
import pytest
import trio
from trio.testing import MockClock

from iii_trio.actors import (
    NO_MAILBOX_STATISTICS,
    ActorStatistics,
    ActorSystem,
    Restart,
    Supervisor,
    SupervisorStatistics,
)
from tests.actors.probes import DEADLINE, Lab, Probe, Root, settle


def test_the_records_are_frozen() -> None:
    stats = ActorStatistics(mailbox=NO_MAILBOX_STATISTICS)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        stats.mailbox = NO_MAILBOX_STATISTICS  # type: ignore[misc]


async def test_a_supervisor_counts_children_restarts_and_running_temporaries(
    autojump_clock: MockClock,
) -> None:
    lab, system = Lab(), ActorSystem()
    supervisor = Supervisor("sup", [lab.spec("a"), lab.spec("b", Restart.TRANSIENT)])
    idle = SupervisorStatistics(
        mailbox=NO_MAILBOX_STATISTICS, children=0, restarts=0, temporaries=0
    )
    assert supervisor.statistics() == idle  # not running yet
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            root = await Root.start(nursery, system, supervisor)
            assert supervisor.statistics() == attrs.evolve(idle, children=2)

            await lab.fail("a")
            await lab.fail("a")
            supervisor.spawn(Probe("t1", lab))
            supervisor.spawn(Probe("t2", lab))
            await settle()
            assert supervisor.statistics() == attrs.evolve(
                idle, children=2, restarts=2, temporaries=2
            )

            await lab.exit("t1")
            await lab.exit("b")  # transient, ended normally: removed, not restarted
            assert supervisor.statistics() == attrs.evolve(
                idle, children=1, restarts=2, temporaries=1
            )
            root.cancel()
            await root.ended()
    assert supervisor.statistics().temporaries == 0
