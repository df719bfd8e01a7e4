"""What routing needs of a connected worker: the calls layer's view of a connection.

The router, the invocations, the registry and the trigger bindings only ever hold a
:class:`Peer`; the worker connection (:mod:`iii_trio.runtime.connections`) implements it.
Keeping the calls layer on this protocol is what lets it stay below the connections layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import trio

from iii_trio.runtime.wire import protocol

if TYPE_CHECKING:
    from iii_trio.runtime.calls.invocation import Invocation


class Peer(Protocol):
    """A connected worker as a caller, a call target, a provider or a binding owner."""

    worker_id: str
    #: ``max_in_flight_per_worker`` slots: one per call running on this worker (D5)
    slots: trio.Semaphore
    #: calls routed to this worker, queued or running
    assigned: set[Invocation]
    #: calls running on this worker by invocation id, where its results are matched
    pending: dict[str, Invocation]
    #: calls this worker made and waits for
    outgoing: set[Invocation]

    def try_deliver(self, frame: bytes) -> bool:
        """Send or queue one frame without waiting; False when the outbox is full. Raises
        ``MailboxClosed`` once the connection is closing."""
        ...

    async def deliver(self, frame: bytes) -> None:
        """Send or queue one frame, waiting while the outbox is full."""
        ...

    def post(self, message: protocol.Message) -> None:
        """Queue a frame without waiting; dropped with a log line when the outbox is full."""
        ...
