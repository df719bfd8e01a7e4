"""The actor: a named body run by the actor system, with an optional bounded mailbox."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import trio

from iii_trio.actors.mailbox import NO_MAILBOX_STATISTICS, Mailbox, MailboxStatistics


class Actor(abc.ABC):
    kind: ClassVar[str] = "actor"
    # True when request_stop() makes the actor finish on its own; otherwise stopping it
    # means cancelling it straight away.
    stops_gracefully: ClassVar[bool] = False

    def __init__(self, name: str, *, mailbox_capacity: int = 0) -> None:
        self.name = name
        self.mailbox: Mailbox[Any] | None = Mailbox(mailbox_capacity) if mailbox_capacity else None

    @abc.abstractmethod
    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """The actor's body. Calls ``task_status.started()`` once ready (OTP init)."""

    def request_stop(self) -> None:
        """Ask for a graceful stop (only called when ``stops_gracefully``); the supervisor
        cancels the actor if it has not finished within its ``shutdown_timeout``."""
        return None

    def mailbox_statistics(self) -> MailboxStatistics:
        return self.mailbox.statistics() if self.mailbox is not None else NO_MAILBOX_STATISTICS
