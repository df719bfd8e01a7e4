"""The SDK depends on the engine's wire package only (the layering sdk <- runtime.wire).

Checked statically with ``ast`` over every file of sdk/ and runtime/wire/, so imports that
run only for the type checker (``if TYPE_CHECKING:``) or inside a function count too. The
wire itself imports nothing else of the project (not even actors/), so a worker built on the
SDK never loads the engine, and the wire package could be published with the SDK.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WIRE = "iii_trio.runtime.wire"


# The project's packages; the root package ``iii_trio`` itself holds only ``__version__``.
PACKAGES = ("iii_trio.actors", "iii_trio.runtime", "iii_trio.sdk")


def imported_names(source: str, package: str) -> set[str]:
    """Every dotted name ``source`` imports, relative imports resolved against ``package``:
    ``import a.b`` gives ``a.b``, ``from a import b`` gives ``a.b`` (``b`` may be a module,
    a class or a function; either way the import depends on ``a.b``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def forbidden(source: str, package: str, allowed: tuple[str, ...]) -> set[str]:
    """The names of the project's packages ``source`` imports outside ``allowed``
    (third-party imports and the root package's ``__version__`` pass)."""
    return {
        name
        for name in imported_names(source, package)
        if any(_within(name, p) for p in PACKAGES) and not any(_within(name, a) for a in allowed)
    }


def sources(folder: str, package: str) -> list[tuple[Path, str]]:
    """Every Python file under ``folder`` with the package that holds it (what its relative
    imports are resolved against)."""
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, folder
    return [
        (path, ".".join((package, *path.relative_to(ROOT / folder).parent.parts))) for path in files
    ]


def test_the_sdk_imports_nothing_of_the_engine_but_the_wire() -> None:
    problems = {
        str(path.relative_to(ROOT)): sorted(bad)
        for path, package in sources("sdk", "iii_trio.sdk")
        if (bad := forbidden(path.read_text(), package, ("iii_trio.sdk", WIRE)))
    }
    assert problems == {}


def test_the_wire_imports_nothing_of_the_engine() -> None:
    problems = {
        str(path.relative_to(ROOT)): sorted(bad)
        for path, package in sources("runtime/wire", WIRE)
        if (bad := forbidden(path.read_text(), package, (WIRE,)))
    }
    assert problems == {}


@pytest.mark.parametrize(
    "line",
    [
        "from iii_trio.runtime.engine import Engine",
        "import iii_trio.runtime.calls.router",
        "from iii_trio.runtime import engine",
        "from iii_trio import runtime",
        "from iii_trio.actors import Actor",
        "from iii_trio.runtime.wire import protocol\nfrom iii_trio.runtime.calls import router",
        "if TYPE_CHECKING:\n    from iii_trio.runtime.connections.connection import X",
        "def f():\n    from ..runtime.config import loading",
    ],
)
def test_the_check_catches_an_import_of_the_engine(line: str) -> None:
    assert forbidden(line, "iii_trio.sdk", ("iii_trio.sdk", WIRE))


@pytest.mark.parametrize(
    "line",
    [
        "from iii_trio.runtime.wire import protocol",
        "from iii_trio.runtime import wire",
        "import iii_trio.runtime.wire.frames",
        "from iii_trio.sdk.errors import InvocationError",
        "from . import errors",
        "import trio",
        "from iii_trio import __version__",
    ],
)
def test_the_check_lets_the_wire_and_the_sdk_through(line: str) -> None:
    assert not forbidden(line, "iii_trio.sdk", ("iii_trio.sdk", WIRE))


def test_importing_the_sdk_loads_no_engine_module() -> None:
    code = (
        "import sys, iii_trio.sdk\n"
        "print(' '.join(m for m in sys.modules if m.startswith('iii_trio.runtime')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    loaded = set(done.stdout.decode().split())
    assert WIRE in loaded
    assert all(m == "iii_trio.runtime" or _within(m, WIRE) for m in loaded), loaded
