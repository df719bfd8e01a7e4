"""The trio task tree as text, for ``kill -USR1 <engine pid>`` (docs/operations.md).

Each task is one line, indented under the task whose nursery runs it, with the actor it
runs (where that changes) and the place it is waiting at (its innermost awaited frame
outside trio). The actor tree (``iii-trio actors``) says what
the engine is; this says where every task is stuck right now.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import trio

from iii_trio.actors import actor_id_in

_TRIO = os.path.dirname(trio.__file__)


def _where(task: trio.lowlevel.Task) -> str:
    """The innermost awaited frame outside trio itself: where this code waits."""
    frames = [
        (f, n) for f, n in task.iter_await_frames() if not f.f_code.co_filename.startswith(_TRIO)
    ]
    if not frames:
        return ""
    frame, lineno = frames[-1]
    code = frame.f_code
    return f"  @ {code.co_filename}:{lineno} in {code.co_name}"


def task_tree() -> tuple[str, int]:
    """The current run's task tree and its number of tasks (call from inside trio)."""
    lines: list[str] = []

    def walk(task: trio.lowlevel.Task, depth: int, parent_actor: str | None) -> None:
        actor = actor_id_in(task.context)
        label = f"  [{actor}]" if actor is not None and actor != parent_actor else ""
        lines.append(f"{'  ' * depth}{task.name}{label}{_where(task)}")
        for nursery in task.child_nurseries:
            for child in sorted(nursery.child_tasks, key=lambda t: t.name):
                walk(child, depth + 1, actor)

    root = trio.lowlevel.current_root_task()
    assert root is not None, "task_tree() runs inside trio"
    walk(root, 0, None)
    return "\n".join(lines) + "\n", len(lines)


def write_task_tree(directory: str | None = None) -> tuple[Path, int]:
    """Write the tree to ``iii-trio-tasks-<pid>-<time>.txt`` in ``directory`` (default: the
    system temp dir); returns the file and the number of tasks."""
    text, count = task_tree()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    folder = Path(directory or tempfile.gettempdir())
    path = folder / f"iii-trio-tasks-{os.getpid()}-{stamp}-{time.monotonic_ns() % 10**6:06d}.txt"
    header = f"# iii-trio task tree, pid {os.getpid()}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
    path.write_text(header + text)
    return path, count
