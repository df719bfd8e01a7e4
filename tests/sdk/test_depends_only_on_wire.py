"""The SDK depends on the engine's wire package only, and the wire on nothing else of the
project (not even actors/): a worker built on the SDK never loads the engine, and the wire
could be published with the SDK.

Checked statically over every file of sdk/ and runtime/wire/ with the import checker
``make lint`` runs (tests/support/layering.py: ``ast``, so imports for the type checker only
and imports inside functions count too), and once dynamically by importing the SDK.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.layering import check_only, source_modules

ROOT = Path(__file__).resolve().parents[2]
ROOTS = {
    "iii_trio": ROOT / "iii_trio",
    "iii_trio.actors": ROOT / "actors",
    "iii_trio.runtime": ROOT / "runtime",
    "iii_trio.sdk": ROOT / "sdk",
}
SDK = "iii_trio.sdk"
WIRE = "iii_trio.runtime.wire"


def test_every_file_of_the_sdk_imports_only_the_wire_of_the_project() -> None:
    modules = source_modules(ROOTS)
    assert f"{SDK}.client" in modules
    violations = check_only(modules, SDK, [WIRE], within="iii_trio")
    assert not violations, "\n".join(map(str, violations))


def test_the_wire_imports_nothing_else_of_the_project() -> None:
    modules = source_modules(ROOTS)
    assert f"{WIRE}.websocket" in modules
    violations = check_only(modules, WIRE, [], within="iii_trio")
    assert not violations, "\n".join(map(str, violations))


def sdk_with(tmp_path: Path, source: str) -> list[str]:
    """What the check reports for a copy of sdk/ with one more file holding ``source``."""
    sdk = tmp_path / "sdk"
    shutil.copytree(ROOT / "sdk", sdk, ignore=shutil.ignore_patterns("__pycache__"))
    (sdk / "extra.py").write_text(source)
    violations = check_only(source_modules({**ROOTS, SDK: sdk}), SDK, [WIRE], within="iii_trio")
    return [v.imported for v in violations if v.module == f"{SDK}.extra"]


@pytest.mark.parametrize(
    "source",
    [
        "from iii_trio.runtime.engine import Engine\n",
        "import iii_trio.runtime.calls.router\n",
        "from iii_trio.runtime import engine\n",
        "from iii_trio import runtime\n",
        "from iii_trio.actors import Actor\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from iii_trio.runtime.connections.connection import WorkerConnection\n",
        "def later() -> None:\n    from ..runtime.config import loading\n",
    ],
    ids=["from", "import", "submodule", "package", "actors", "type-only", "relative-in-def"],
)
def test_an_sdk_file_importing_the_engine_is_caught(tmp_path: Path, source: str) -> None:
    assert sdk_with(tmp_path, source)


@pytest.mark.parametrize(
    "source",
    [
        "from iii_trio.runtime.wire import protocol\n",
        "from iii_trio.runtime import wire\n",
        "import iii_trio.runtime.wire.frames\n",
        "from iii_trio.sdk.errors import InvocationError\n",
        "from . import errors\n",
        "from iii_trio import __version__\n",
        "import trio\n",
    ],
)
def test_the_wire_the_sdk_and_the_version_pass(tmp_path: Path, source: str) -> None:
    assert sdk_with(tmp_path, source) == []


@pytest.mark.slow  # a fresh interpreter in its own process
def test_importing_the_sdk_loads_no_engine_module() -> None:
    code = (
        "import sys, iii_trio.sdk\n"
        "print(' '.join(m for m in sys.modules if m.startswith('iii_trio.runtime')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    loaded = set(done.stdout.decode().split())
    assert WIRE in loaded
    engine = {
        m for m in loaded if m != "iii_trio.runtime" and m != WIRE and not m.startswith(WIRE + ".")
    }
    assert not engine, engine
