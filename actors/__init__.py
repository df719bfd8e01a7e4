"""An actor toolkit on trio: actors with bounded mailboxes, OTP-style supervisors, and a
live tree of every running actor for introspection.

An actor is an object with an async ``run()``; the system runs it in a task and gives it an
id (``kind:name#short-id``); a supervisor starts children in order, restarts them when
they exit, and stops them in reverse::

    import trio
    from iii_trio.actors import Actor, ActorSystem, ChildSpec, Supervisor

    class Greeter(Actor):
        kind = "greeter"

        def __init__(self, name):
            super().__init__(name, mailbox_capacity=16)

        async def run(self, task_status=trio.TASK_STATUS_IGNORED):
            task_status.started()  # ready: the supervisor may start its next child
            async for message in self.mailbox:
                print(f"hello, {message}")

    async def main():
        system = ActorSystem()
        root = Supervisor("root", [ChildSpec("greeter", lambda: Greeter("greeter"))])
        async with trio.open_nursery() as nursery:
            await nursery.start(system.run_actor, root, None)  # once every child is ready
            greeter = system.actor(root.children()[0])
            await greeter.mailbox.send("world")
            for row in system.rows():  # ActorSnapshot records, each parent first
                print(row.id, row.state.value, row.mailbox.capacity)
            root.request_stop()  # stops the greeter, then returns

    trio.run(main)

Every restart gets a fresh actor from the factory; a child that must stay the same object
(others hold it) is declared with ``ChildSpec.reusing``. Short-lived children go through
``Supervisor.spawn``, or run inline in the caller's task with ``ActorSystem.run_temporary``;
either way their failure is logged and contained.

Inside an actor (and the tasks it starts), ``current_actor()``, ``current_actor_id()`` and
``current_system()`` say where the code runs. Bounded things report frozen statistics
records through ``statistics()``, as trio's own objects do.
"""

from iii_trio.actors.actor import Actor, ActorStatistics
from iii_trio.actors.mailbox import (
    NO_MAILBOX_STATISTICS,
    Mailbox,
    MailboxClosed,
    MailboxStatistics,
)
from iii_trio.actors.supervisor import (
    ChildSpec,
    Restart,
    RestartIntensityExceeded,
    Strategy,
    Supervisor,
    SupervisorStatistics,
)
from iii_trio.actors.system import (
    ActorSnapshot,
    ActorState,
    ActorSystem,
    ActorTreeNode,
    actor_id_in,
    current_actor,
    current_actor_id,
    current_system,
)

__all__ = [
    "NO_MAILBOX_STATISTICS",
    "Actor",
    "ActorSnapshot",
    "ActorState",
    "ActorStatistics",
    "ActorSystem",
    "ActorTreeNode",
    "ChildSpec",
    "Mailbox",
    "MailboxClosed",
    "MailboxStatistics",
    "Restart",
    "RestartIntensityExceeded",
    "Strategy",
    "Supervisor",
    "SupervisorStatistics",
    "actor_id_in",
    "current_actor",
    "current_actor_id",
    "current_system",
]
