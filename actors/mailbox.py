"""A bounded mailbox with the statistics introspection needs.

The mailbox is a thin wrapper over one trio memory channel: the channel already gives
bounded buffering, FIFO order, backpressure (``send`` waits while full) and fair wake-ups.
What the wrapper adds is one error type for "closed" on both sides, and statistics in the
shape every bounded thing in the project reports (depth, peak, capacity, waiters).
"""

from __future__ import annotations

from typing import Generic, TypeVar

import attrs
import trio

T = TypeVar("T")

# trio >= 0.35 keeps the high-water mark of a memory channel itself, updated inside
# send_nowait for free. Older trio does not; then the mailbox samples the depth after each
# send instead (one statistics() call, a few microseconds).
_TRIO_TRACKS_PEAK = "peak_buffer_used" in attrs.fields_dict(trio.MemoryChannelStatistics)


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


NO_MAILBOX_STATISTICS = MailboxStatistics(depth=0, peak=0, capacity=0, waiting_senders=0)


class MailboxClosed(Exception):
    """The mailbox was closed: no more sends, and nothing left to receive."""


class Mailbox(Generic[T]):
    """A bounded FIFO. ``send`` waits while it is full; ``try_send`` refuses instead.

    ``close()`` refuses further sends at once (blocked senders get ``MailboxClosed``, their
    messages are not delivered) while receivers still drain what is buffered before they
    see ``MailboxClosed``.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            # Capacity 0 would be a rendezvous channel: no depth to report, and every send
            # would wait for a receiver. An actor without a mailbox has ``mailbox = None``.
            raise ValueError(f"a mailbox needs a capacity of at least 1, got {capacity}")
        self.capacity = capacity
        self._send, self._receive = trio.open_memory_channel[T](capacity)
        self._peak = 0  # only used when trio does not track the peak itself
        self._closed = False

    async def send(self, message: T) -> None:
        try:
            await self._send.send(message)
        except trio.ClosedResourceError:
            raise MailboxClosed("the mailbox is closed") from None
        if not _TRIO_TRACKS_PEAK:  # pragma: no cover - depends on the trio version
            self._sample_peak()

    def try_send(self, message: T) -> bool:
        """Deliver ``message`` if there is room now; False when the mailbox is full."""
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            return False
        except trio.ClosedResourceError:
            raise MailboxClosed("the mailbox is closed") from None
        if not _TRIO_TRACKS_PEAK:  # pragma: no cover - depends on the trio version
            self._sample_peak()
        return True

    async def receive(self) -> T:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            raise MailboxClosed("the mailbox is closed and drained") from None

    def receive_nowait(self) -> T:
        """The next message; ``trio.WouldBlock`` when empty, ``MailboxClosed`` when closed
        and empty."""
        try:
            return self._receive.receive_nowait()
        except trio.EndOfChannel:
            raise MailboxClosed("the mailbox is closed and drained") from None

    def close(self) -> None:
        """Refuse further sends. Idempotent; not a checkpoint, so safe in cleanup code."""
        # Closing the only send handle wakes blocked senders with ClosedResourceError and,
        # once the buffer is empty, blocked receivers with EndOfChannel.
        self._closed = True
        self._send.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def statistics(self) -> MailboxStatistics:
        stats = self._send.statistics()
        return MailboxStatistics(
            depth=stats.current_buffer_used,
            peak=stats.peak_buffer_used if _TRIO_TRACKS_PEAK else self._peak,
            capacity=self.capacity,
            waiting_senders=stats.tasks_waiting_send,
        )

    def _sample_peak(self) -> None:  # pragma: no cover - depends on the trio version
        depth = self._send.statistics().current_buffer_used
        if depth > self._peak:
            self._peak = depth

    def __aiter__(self) -> Mailbox[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except MailboxClosed:
            raise StopAsyncIteration from None
