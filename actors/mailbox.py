"""A bounded mailbox with the statistics introspection needs."""

from __future__ import annotations

from typing import Generic, TypeVar

import attrs
import trio

T = TypeVar("T")


@attrs.frozen
class MailboxStatistics:
    depth: int  # messages buffered now
    peak: int  # highest depth seen
    capacity: int  # the bound; 0 for an actor without a mailbox
    waiting_senders: int  # tasks blocked in send()

    def as_dict(self) -> dict[str, int]:
        return {
            "depth": self.depth,
            "peak": self.peak,
            "capacity": self.capacity,
            "waiting_senders": self.waiting_senders,
        }


NO_MAILBOX_STATISTICS = MailboxStatistics(0, 0, 0, 0)


class MailboxClosed(Exception):
    """The mailbox was closed: no more sends, and nothing left to receive."""


class Mailbox(Generic[T]):
    """A bounded FIFO on a trio memory channel. ``send`` waits while it is full."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a mailbox needs a capacity of at least 1, got {capacity}")
        self.capacity = capacity
        self._send, self._receive = trio.open_memory_channel[T](capacity)
        self._peak = 0

    def _note_depth(self) -> None:
        depth = self._send.statistics().current_buffer_used
        if depth > self._peak:
            self._peak = depth

    async def send(self, message: T) -> None:
        try:
            await self._send.send(message)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise MailboxClosed from None
        self._note_depth()

    def try_send(self, message: T) -> bool:
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise MailboxClosed from None
        self._note_depth()
        return True

    async def receive(self) -> T:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise MailboxClosed from None

    def receive_nowait(self) -> T:
        try:
            return self._receive.receive_nowait()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise MailboxClosed from None

    def close(self) -> None:
        """Refuse further sends; receivers drain what is buffered, then see MailboxClosed."""
        self._send.close()

    def statistics(self) -> MailboxStatistics:
        stats = self._send.statistics()
        return MailboxStatistics(
            depth=stats.current_buffer_used,
            peak=self._peak,
            capacity=self.capacity,
            waiting_senders=stats.tasks_waiting_send,
        )

    def __aiter__(self) -> Mailbox[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except MailboxClosed:
            raise StopAsyncIteration from None
