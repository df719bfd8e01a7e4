"""Bounded mailboxes: capacity, backpressure, statistics and closing."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from iii_trio.actors import (
    NO_MAILBOX_STATISTICS,
    Actor,
    ActorStatistics,
    Mailbox,
    MailboxClosed,
    MailboxStatistics,
)
from tests.actors.probes import DEADLINE, settle


@pytest.mark.parametrize("capacity", [0, -1])
def test_capacity_must_be_at_least_one(capacity: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Mailbox[int](capacity)


async def test_try_send_refuses_when_full_and_order_is_fifo(autojump_clock: MockClock) -> None:
    box = Mailbox[int](2)
    assert box.try_send(1)
    assert box.try_send(2)
    assert not box.try_send(3)
    assert [box.receive_nowait(), await box.receive()] == [1, 2]


async def test_send_waits_while_full_and_resumes_when_room(autojump_clock: MockClock) -> None:
    box = Mailbox[str](1)
    await box.send("a")
    sent = trio.Event()

    async def blocked_sender() -> None:
        await box.send("b")
        sent.set()

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocked_sender)
            await settle()
            assert not sent.is_set()
            assert box.statistics().waiting_senders == 1
            assert await box.receive() == "a"
            await sent.wait()
        assert box.statistics().waiting_senders == 0
        assert await box.receive() == "b"


async def test_statistics_report_depth_peak_capacity_and_waiting_senders(
    autojump_clock: MockClock,
) -> None:
    box = Mailbox[int](3)
    for n in range(3):
        await box.send(n)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(box.send, 3)
            nursery.start_soon(box.send, 4)
            await settle()
            assert box.statistics() == MailboxStatistics(
                depth=3, peak=3, capacity=3, waiting_senders=2
            )
            for _ in range(4):
                await box.receive()
        # One left; the peak stays at the highest depth seen.
        assert box.statistics().as_dict() == {
            "depth": 1,
            "peak": 3,
            "capacity": 3,
            "waiting_senders": 0,
        }


async def test_peak_does_not_count_messages_handed_straight_to_a_waiting_receiver(
    autojump_clock: MockClock,
) -> None:
    box = Mailbox[int](4)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(box.receive)
            await settle()
            assert box.try_send(1)
    assert box.statistics() == MailboxStatistics(depth=0, peak=0, capacity=4, waiting_senders=0)


async def test_close_refuses_sends_and_receivers_drain_what_is_buffered(
    autojump_clock: MockClock,
) -> None:
    box = Mailbox[str](4)
    await box.send("a")
    await box.send("b")
    box.close()
    box.close()  # idempotent
    assert box.closed
    with pytest.raises(MailboxClosed):
        await box.send("c")
    with pytest.raises(MailboxClosed):
        box.try_send("c")
    assert await box.receive() == "a"
    assert box.receive_nowait() == "b"
    with pytest.raises(MailboxClosed):
        box.receive_nowait()
    with pytest.raises(MailboxClosed):
        await box.receive()


async def test_receive_nowait_on_an_open_empty_mailbox_would_block(
    autojump_clock: MockClock,
) -> None:
    box = Mailbox[int](1)
    with pytest.raises(trio.WouldBlock):
        box.receive_nowait()


async def test_close_fails_blocked_senders_and_their_messages_are_dropped(
    autojump_clock: MockClock,
) -> None:
    box = Mailbox[int](1)
    assert box.try_send(1)
    outcome: list[str] = []

    async def blocked_sender() -> None:
        try:
            await box.send(2)
        except MailboxClosed:
            outcome.append("closed")

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocked_sender)
            await settle()
            box.close()
    assert outcome == ["closed"]
    assert box.receive_nowait() == 1
    with pytest.raises(MailboxClosed):
        box.receive_nowait()


async def test_close_wakes_a_blocked_receiver_and_iteration_ends_after_draining(
    autojump_clock: MockClock,
) -> None:
    box = Mailbox[int](3)
    got: list[int] = []

    async def consume() -> None:
        async for item in box:
            got.append(item)
        got.append(-1)  # the loop ended

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await box.send(1)
            await box.send(2)
            await settle()
            box.close()
    assert got == [1, 2, -1]


class _Idle(Actor):
    async def run(self, task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()


def test_an_actor_has_a_mailbox_only_when_given_a_capacity() -> None:
    without = _Idle("without")
    assert without.mailbox is None
    assert without.statistics() == ActorStatistics(mailbox=NO_MAILBOX_STATISTICS)
    assert NO_MAILBOX_STATISTICS.as_dict() == {
        "depth": 0,
        "peak": 0,
        "capacity": 0,
        "waiting_senders": 0,
    }

    with_box = _Idle("with", mailbox_capacity=8)
    assert with_box.mailbox is not None
    assert with_box.mailbox.try_send("hello")
    assert with_box.statistics().mailbox == MailboxStatistics(
        depth=1, peak=1, capacity=8, waiting_senders=0
    )
