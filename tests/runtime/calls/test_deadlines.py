"""The one deadline timer of the calls that run without a task (runtime/deadlines.py)."""

from __future__ import annotations

import trio
import trio.testing

from iii_trio.actors import ActorSystem
from iii_trio.runtime.calls.deadlines import Deadlines


class Call:
    def __init__(self, name: str, timeout_ms: int, expired: list[tuple[str, float]]) -> None:
        self.name = name
        self.timeout_ms = timeout_ms
        self.deadline = trio.current_time() + timeout_ms / 1000
        self._expired = expired

    def expire(self) -> None:
        self._expired.append((self.name, trio.current_time()))


async def test_calls_expire_at_their_deadline_across_timeouts(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    deadlines = Deadlines()
    await nursery.start(ActorSystem().run_actor, deadlines, None)
    expired: list[tuple[str, float]] = []
    start = trio.current_time()
    deadlines.add(Call("a", 3000, expired))
    await trio.sleep(0.5)
    deadlines.add(Call("b", 3000, expired))
    # A shorter timeout than anything waiting wakes the timer for an earlier deadline.
    deadlines.add(Call("c", 1000, expired))
    finished = Call("d", 2000, expired)
    deadlines.add(finished)
    deadlines.discard(finished)  # settled by its target: never expires
    assert len(deadlines) == 3
    await trio.sleep(5)
    assert [(name, round(at - start, 3)) for name, at in expired] == [
        ("c", 1.5),
        ("a", 3.0),
        ("b", 3.5),
    ]
    assert len(deadlines) == 0
    later = Call("e", 100, expired)
    deadlines.add(later)  # the idle timer wakes for a new call
    await trio.sleep(1)
    assert expired[-1] == ("e", later.deadline)
