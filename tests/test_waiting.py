"""tests/support/waiting.py: ``wait_until`` returns what the predicate found, or fails saying
what did not happen. Under the autojump clock, so the timeouts cost no real time."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests.support.waiting import wait_until


async def test_returns_the_first_truthy_value_of_a_sync_predicate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    values = iter([0, [], None, {"found": 1}])
    assert await wait_until(lambda: next(values), what="a value") == {"found": 1}


async def test_awaits_an_async_predicate_and_polls_every_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    checked_at: list[float] = []

    async def ready() -> bool:
        checked_at.append(trio.current_time())
        return len(checked_at) == 3

    start = trio.current_time()
    assert await wait_until(ready, what="the third check", interval=0.5) is True
    assert [round(at - start, 3) for at in checked_at] == [0.0, 0.5, 1.0]


async def test_fails_saying_what_did_not_happen_and_what_it_last_saw(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start = trio.current_time()
    with pytest.raises(AssertionError) as info:
        await wait_until(lambda: [], what="the queue fills", timeout=3)
    assert str(info.value) == "not within 3 s: the queue fills (last check: [])"
    assert trio.current_time() - start == pytest.approx(3)


class LongAndFalsy:
    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "row " * 1000


async def test_a_long_last_value_is_cut_short(autojump_clock: trio.testing.MockClock) -> None:
    with pytest.raises(AssertionError) as info:
        await wait_until(LongAndFalsy, what="a row", timeout=1)
    message = str(info.value)
    assert message.startswith("not within 1 s: a row (last check: row row ")
    assert message.endswith("...)")
    assert len(message) < 400
