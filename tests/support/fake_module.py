"""Install a module kind that exists only in a test, as ``runtime/modules/<kind>`` would."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from iii_trio.runtime import modules


@contextmanager
def fake_module_kind(kind: str, create: Callable[[Any, Any], Any]) -> Iterator[str]:
    """``create(engine, entry)`` builds the module; the kind is removed afterwards."""
    submodule = types.ModuleType(f"{modules.__name__}.{kind}")
    submodule.create = create  # type: ignore[attr-defined]
    # importlib.util.find_spec needs a spec on modules already imported.
    submodule.__spec__ = types.SimpleNamespace(name=submodule.__name__)  # type: ignore[assignment]
    sys.modules[submodule.__name__] = submodule
    try:
        yield kind
    finally:
        del sys.modules[submodule.__name__]
