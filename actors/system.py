"""The actor system: the live tree of actors and ``current_actor()``.

Every running actor has a row (id, kind, name, parent, state, started_at, restarts and its
mailbox statistics) from the moment it starts until its body returns; introspection reads
the rows. Ids have one format everywhere: ``kind:name#short-id``.
"""

from __future__ import annotations

import contextvars
import enum
import itertools
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

from iii_trio.actors.actor import Actor


class ActorState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    RESTARTING = "restarting"


@attrs.define(slots=True)
class ActorInfo:
    id: str
    kind: str
    name: str
    parent: str | None
    state: ActorState
    started_at: int  # Unix ms
    restarts: int
    actor: Actor = attrs.field(eq=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        stats = self.actor.mailbox_statistics()
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "parent": self.parent,
            "state": self.state.value,
            "started_at": self.started_at,
            "restarts": self.restarts,
            "mailbox": {"depth": stats.depth, "peak": stats.peak, "capacity": stats.capacity},
        }


_current: contextvars.ContextVar[tuple[ActorSystem, ActorInfo]] = contextvars.ContextVar(
    "iii_trio_current_actor"
)


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


class ActorSystem:
    def __init__(self, *, wall_clock_ms: Callable[[], int] = _wall_clock_ms) -> None:
        self._rows: dict[str, ActorInfo] = {}
        self._clock = wall_clock_ms
        self._serial = itertools.count(1)

    def new_id(self, kind: str, name: str) -> str:
        return f"{kind}:{name}#{next(self._serial):06x}"

    async def run_actor(
        self,
        actor: Actor,
        parent: str | None,
        *,
        actor_id: str | None = None,
        restarts: int = 0,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run ``actor`` in this task with a row in the tree until its body returns.

        The row is RUNNING once the body calls ``task_status.started()``; an actor spawned
        with ``start_soon`` (no one waiting for it) is RUNNING from the start. Exceptions
        propagate; the row is removed either way. Awaited inline, the current actor is
        restored afterwards.
        """
        info = ActorInfo(
            id=actor_id or self.new_id(actor.kind, actor.name),
            kind=actor.kind,
            name=actor.name,
            parent=parent,
            state=ActorState.STARTING,
            started_at=self._clock(),
            restarts=restarts,
            actor=actor,
        )
        self._rows[info.id] = info
        token = _current.set((self, info))
        try:
            if task_status is trio.TASK_STATUS_IGNORED:
                info.state = ActorState.RUNNING
                await actor.run()
            else:
                await actor.run(task_status=_Started(info, task_status))
        finally:
            info.state = ActorState.STOPPING
            if self._rows.get(info.id) is info:
                del self._rows[info.id]
            _current.reset(token)

    def info(self, actor_id: str) -> ActorInfo | None:
        return self._rows.get(actor_id)

    def set_state(self, actor_id: str, state: ActorState) -> None:
        row = self._rows.get(actor_id)
        if row is not None:
            row.state = state

    def rows(self) -> list[dict[str, Any]]:
        """Every live actor, parents before their children."""
        return [row.as_dict() for row in self._ordered()]

    def tree(self) -> list[dict[str, Any]]:
        nodes: dict[str, dict[str, Any]] = {}
        roots: list[dict[str, Any]] = []
        for row in self._ordered():
            node = {**row.as_dict(), "children": []}
            nodes[row.id] = node
            parent = nodes.get(row.parent) if row.parent is not None else None
            (parent["children"] if parent is not None else roots).append(node)
        return roots

    def _ordered(self) -> list[ActorInfo]:
        # Rows are inserted when actors start, and a parent starts before its children.
        return list(self._rows.values())

    def __len__(self) -> int:
        return len(self._rows)


class _Started:
    """Forwards ``started()`` and marks the row RUNNING."""

    def __init__(self, info: ActorInfo, inner: trio.TaskStatus[Any]) -> None:
        self._info = info
        self._inner = inner

    def started(self, value: Any = None) -> None:
        self._info.state = ActorState.RUNNING
        self._inner.started(value)


def current_actor() -> Actor:
    return _current_entry()[1].actor


def current_actor_id() -> str:
    return _current_entry()[1].id


def current_system() -> ActorSystem:
    return _current_entry()[0]


def _current_entry() -> tuple[ActorSystem, ActorInfo]:
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError(
            "no current actor: this code runs outside any actor. Start it with "
            "ActorSystem.run_actor() (or as a supervisor's child) to give it one."
        ) from None
