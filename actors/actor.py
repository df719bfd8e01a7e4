"""The actor: a named body run by the actor system, with an optional bounded mailbox."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import attrs
import trio

from iii_trio.actors.mailbox import NO_MAILBOX_STATISTICS, Mailbox, MailboxStatistics


@attrs.frozen
class ActorStatistics:
    """What ``Actor.statistics()`` reports; subclasses that bound more report more."""

    mailbox: MailboxStatistics  # all zero for an actor without a mailbox


class Actor(abc.ABC):
    """Subclass and implement ``run``. Run it with ``ActorSystem.run_actor`` or as a child
    of a ``Supervisor``; its identity (``kind:name#short-id``) is given by the system."""

    kind: ClassVar[str] = "actor"

    def __init__(self, name: str, *, mailbox_capacity: int = 0) -> None:
        self.name = name
        # No mailbox unless asked for: most actors (one per request, long-running services)
        # never receive messages, and a mailbox is a channel pair they would carry for nothing.
        self.mailbox: Mailbox[Any] | None = Mailbox(mailbox_capacity) if mailbox_capacity else None

    @abc.abstractmethod
    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """The actor's body. Calls ``task_status.started()`` once ready (OTP init)."""

    def request_stop(self) -> None:  # noqa: B027 - a deliberate no-op default
        """Ask for a graceful stop: finish soon, return normally.

        The default does nothing. A supervisor stopping a child calls this, waits up to the
        child's ``shutdown_timeout`` and then cancels it; an actor that does not override
        this method could never hear the request, so it is cancelled at once instead.
        """

    def statistics(self) -> ActorStatistics:
        """The actor's bounded parts, in trio's style (``MemoryChannel.statistics()``)."""
        mailbox = self.mailbox
        return ActorStatistics(
            mailbox=mailbox.statistics() if mailbox is not None else NO_MAILBOX_STATISTICS
        )
