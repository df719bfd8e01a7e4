"""The engine's one wall clock for timestamps on the wire (Unix milliseconds).

Deadlines, timeouts and anything tests must control run on trio's clock instead
(``trio.current_time()``), so the autojump clock can drive them.
"""

from __future__ import annotations

import time


def now_ms() -> int:
    """Unix time in ms: the clock of ``started_at``, ``timestamp`` and ``deadline_ms`` rows."""
    return int(time.time() * 1000)
