"""The clock of a test parametrized over backends.

pytest-trio runs a test on whichever ``trio.abc.Clock`` its arguments hold, and on the real
clock when they hold none. A test over several backends takes a ``clock`` fixture made with
``backend_clock``: the autojump clock for a backend that lives in the test's own trio run, so
its sleeps and deadlines cost no real time; ``None`` (the real clock) for one that lives in
another process (redis-server) or in worker threads (SQLite), which the autojump clock cannot
see: it would jump to the next deadline while the thread or the process is still working.
"""

from __future__ import annotations

import trio.testing

IN_PROCESS_BACKENDS = frozenset({"in_memory", "local"})


def backend_clock(backend: str) -> trio.testing.MockClock | None:
    if backend in IN_PROCESS_BACKENDS:
        return trio.testing.MockClock(autojump_threshold=0)
    return None
