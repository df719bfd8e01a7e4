"""The actor system: the live tree of actors, their ids, and ``current_actor()``.

Every running actor has a row from the moment it starts until its body returns.
Introspection reads them as frozen records: ``rows()`` lists an ``ActorSnapshot`` per live
actor, parents first, and ``tree()`` nests them in ``ActorTreeNode`` records. Ids have one
format everywhere: ``kind:name#short-id``.
"""

from __future__ import annotations

import contextvars
import enum
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import trio

from iii_trio.actors.actor import Actor
from iii_trio.actors.mailbox import MailboxStatistics

log = logging.getLogger("iii_trio.actors")

# Short ids are 6 hex digits, handed out in sequence and wrapping around; an id still in
# use by a live actor is skipped, so ids are unique among live actors and, in practice,
# over the last 16 million starts.
_ID_SPACE = 1 << 24


class ActorState(enum.Enum):
    STARTING = "starting"  # registered, run() has not called task_status.started() yet
    RUNNING = "running"
    STOPPING = "stopping"  # its supervisor is stopping it (or its body is finishing)
    RESTARTING = "restarting"  # stopped by its supervisor in order to be restarted


@attrs.frozen
class ActorSnapshot:
    """One live actor as it was when the system was read: what introspection shows.

    A record, not a view: it does not change when the actor does, and it holds no
    reference to the actor object (``ActorSystem.actor(id)`` gives that).
    """

    id: str  # kind:name#short-id
    kind: str
    name: str
    parent: str | None  # the id of the actor it runs under; None for a root
    state: ActorState
    started_at_ms: int  # Unix ms (wall clock) of this incarnation's start
    restarts: int  # how often its supervisor restarted it under this id
    mailbox: MailboxStatistics  # all zero for an actor without a mailbox


@attrs.frozen
class ActorTreeNode:
    """An actor of the tree with the actors running under it, in the order they started."""

    actor: ActorSnapshot
    children: tuple[ActorTreeNode, ...] = ()


@attrs.define(slots=True)
class _LiveRow:
    """The system's mutable record of one running actor (one per actor on the hot path:
    nothing in it is computed until a snapshot is taken)."""

    id: str
    kind: str
    name: str
    parent: str | None
    state: ActorState
    started_at: int  # Unix ms (wall clock)
    restarts: int
    actor: Actor = attrs.field(eq=False, repr=False)

    def snapshot(self) -> ActorSnapshot:
        return ActorSnapshot(
            id=self.id,
            kind=self.kind,
            name=self.name,
            parent=self.parent,
            state=self.state,
            started_at_ms=self.started_at,
            restarts=self.restarts,
            mailbox=self.actor.statistics().mailbox,
        )


# The running actor of this task. run_actor sets it in the actor's own task; trio copies
# the context into every task started from there, so helpers spawned by an actor see it.
_current: contextvars.ContextVar[tuple[ActorSystem, _LiveRow]] = contextvars.ContextVar(
    "iii_trio_current_actor"
)


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


class ActorSystem:
    """The live actors of one tree: runs them (``run_actor``, ``run_temporary``), gives
    them ids, and reports them as snapshots (``rows``, ``tree``, ``info``)."""

    def __init__(self, *, wall_clock_ms: Callable[[], int] = _wall_clock_ms) -> None:
        self._rows: dict[str, _LiveRow] = {}
        self._clock = wall_clock_ms
        self._serial = 0

    def new_id(self, kind: str, name: str) -> str:
        """A fresh ``kind:name#xxxxxx`` id, unique among this system's live actors."""
        while True:
            self._serial = (self._serial + 1) % _ID_SPACE
            actor_id = f"{kind}:{name}#{self._serial:06x}"
            if actor_id not in self._rows:
                return actor_id

    async def run_actor(
        self,
        actor: Actor,
        parent: str | None,
        *,
        actor_id: str | None = None,
        restarts: int = 0,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run ``actor`` in this task, with a row in the tree, until its body returns.

        The row is STARTING until the body calls ``task_status.started()``, then RUNNING.
        When nobody waits for ``started()`` (the actor was spawned with ``start_soon``, so
        ``task_status`` is ``TASK_STATUS_IGNORED``) the row is RUNNING at once, whether or
        not the body ever calls it. The row is removed when the body returns or raises;
        exceptions propagate unchanged. Awaited inline from another actor, that actor is
        the current one again afterwards.

        Cheap enough for one short-lived actor per request: this allocates the row (and a
        small forwarder only when someone waits for ``started()``), nothing else.
        """
        if actor_id is None:
            actor_id = self.new_id(actor.kind, actor.name)
        info = _LiveRow(
            id=actor_id,
            kind=actor.kind,
            name=actor.name,
            parent=parent,
            state=ActorState.STARTING,
            started_at=self._clock(),
            restarts=restarts,
            actor=actor,
        )
        self._rows[actor_id] = info
        token = _current.set((self, info))
        try:
            if task_status is trio.TASK_STATUS_IGNORED:
                info.state = ActorState.RUNNING
                await actor.run()
            else:
                await actor.run(task_status=_MarkRunning(info, task_status))
        finally:
            info.state = ActorState.STOPPING
            # A row is only ever replaced by a restart under the same id after this one
            # ended; the check keeps a late finally from removing a newer incarnation.
            if self._rows.get(actor_id) is info:
                del self._rows[actor_id]
            _current.reset(token)

    async def run_temporary(
        self, actor: Actor, parent: str | None, *, actor_id: str | None = None
    ) -> None:
        """Run ``actor`` in this task as a temporary child of ``parent``, its failure
        contained: logged, never raised, never restarted.

        For a child whose lifetime is the caller's own (one actor per accepted socket,
        awaited in the task that serves it): it appears under ``parent`` in the tree while
        it runs, and whoever cancels the caller stops it. An exception from its body is
        logged as ``<actor id> failed`` and ends only this child; cancellation (and any
        other ``BaseException``) propagates as usual.
        """
        if actor_id is None:
            actor_id = self.new_id(actor.kind, actor.name)
        try:
            await self.run_actor(actor, parent, actor_id=actor_id)
        except Exception:
            log.exception("%s failed", actor_id)

    def actor(self, actor_id: str) -> Actor | None:
        """The live actor with this id (to reach its mailbox, say); None once it ended."""
        row = self._rows.get(actor_id)
        return row.actor if row is not None else None

    def info(self, actor_id: str) -> ActorSnapshot | None:
        """A snapshot of one live actor; None for an actor that is gone."""
        row = self._rows.get(actor_id)
        return row.snapshot() if row is not None else None

    def set_state(self, actor_id: str, state: ActorState) -> None:
        """Set the state of a live actor; ignored for an actor that is gone."""
        row = self._rows.get(actor_id)
        if row is not None:
            row.state = state

    def rows(self) -> list[ActorSnapshot]:
        """Every live actor, depth first: each parent directly before its subtree."""
        return [row.snapshot() for row, _ in self._walk()]

    def tree(self) -> list[ActorTreeNode]:
        """The roots (actors without a live parent), each with its subtree."""
        # Frozen nodes are built children first: walking the depth-first order backwards
        # reaches every node after all of its descendants (and siblings last to first).
        order = list(self._walk())
        pending: dict[str, list[ActorTreeNode]] = {}
        roots: list[ActorTreeNode] = []
        for row, parent in reversed(order):
            children = pending.pop(row.id, [])
            children.reverse()
            node = ActorTreeNode(row.snapshot(), tuple(children))
            (roots if parent is None else pending.setdefault(parent.id, [])).append(node)
        roots.reverse()
        return roots

    def __len__(self) -> int:
        return len(self._rows)

    def _walk(self) -> Iterator[tuple[_LiveRow, _LiveRow | None]]:
        """Depth-first pre-order over the live rows, with each row's live parent.

        Siblings come in the order they (re)started: dict insertion order, so a restarted
        actor moves after its siblings. An actor whose parent is not a live actor counts
        as a root, so every row is visited exactly once.
        """
        children: dict[str, list[_LiveRow]] = {}
        roots: list[_LiveRow] = []
        for row in self._rows.values():
            if row.parent is not None and row.parent in self._rows:
                children.setdefault(row.parent, []).append(row)
            else:
                roots.append(row)
        stack: list[tuple[_LiveRow, _LiveRow | None]] = [(row, None) for row in reversed(roots)]
        while stack:
            row, parent = stack.pop()
            yield row, parent
            stack.extend((child, row) for child in reversed(children.get(row.id, ())))


class _MarkRunning:
    """The ``task_status`` handed to an actor's body: marks the row RUNNING, then forwards."""

    __slots__ = ("_info", "_inner")

    def __init__(self, info: _LiveRow, inner: trio.TaskStatus[Any]) -> None:
        self._info = info
        self._inner = inner

    def started(self, value: Any = None) -> None:
        self._info.state = ActorState.RUNNING
        self._inner.started(value)


def current_actor() -> Actor:
    """The actor running this task (or the task that started it)."""
    return _current_entry()[1].actor


def current_actor_id() -> str:
    return _current_entry()[1].id


def current_system() -> ActorSystem:
    return _current_entry()[0]


def _current_entry() -> tuple[ActorSystem, _LiveRow]:
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError(
            "no current actor: this code runs outside any actor. Actors get one from "
            "ActorSystem.run_actor() (directly, or as a supervisor's child or spawn()); "
            "tasks an actor starts inherit it, tasks started elsewhere do not."
        ) from None


def actor_id_in(context: contextvars.Context) -> str | None:
    """The id of the actor a task runs, read from that task's context (task dumps)."""
    entry = context.get(_current)
    return entry[1].id if entry is not None else None
