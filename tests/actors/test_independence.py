"""actors/ is a library of its own: it imports nothing of the engine or the SDK and names
nothing of the iii protocol, so it could be published alone.

A static check (``ast``), so imports under ``if TYPE_CHECKING:`` and inside functions
count as much as top-level ones.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ACTORS = Path(__file__).resolve().parents[2] / "actors"
SOURCES = sorted(ACTORS.rglob("*.py"))
# What the toolkit may import: the standard library, its two dependencies, itself.
ALLOWED_ROOTS = set(sys.stdlib_module_names) | {"trio", "attrs", "__future__"}
OWN_PACKAGE = "iii_trio.actors"
# Words of the iii protocol and of the engine built on the toolkit.
FORBIDDEN_WORDS = re.compile(
    r"\b(functions?|workers?|json|wire|invocations?|engine|triggers?|sdk)\b", re.IGNORECASE
)


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: stays inside actors/ unless it climbs out
                found.append((node.lineno, "." * node.level + (node.module or "")))
            else:
                found.append((node.lineno, node.module or ""))
    return found


def allowed(module: str) -> bool:
    if module.startswith("."):
        return not module.startswith("..")
    if module == OWN_PACKAGE or module.startswith(OWN_PACKAGE + "."):
        return True
    return module.split(".")[0] in ALLOWED_ROOTS


def test_there_are_sources_to_check() -> None:
    assert {path.name for path in SOURCES} >= {"__init__.py", "actor.py", "supervisor.py"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: path.name)
def test_imports_only_the_standard_library_trio_attrs_and_itself(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = [f"{path.name}:{line} imports {name}" for line, name in imported_modules(tree)]
    bad = [entry for entry in bad if not allowed(entry.rsplit(" ", 1)[1])]
    assert bad == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: path.name)
def test_names_nothing_of_the_runtime_or_the_protocol(path: Path) -> None:
    text = path.read_text()
    # Also catches importlib strings and quoted annotations.
    assert "iii_trio.runtime" not in text
    assert "iii_trio.sdk" not in text
    mentions = [
        f"{path.name}:{number}: {match.group(0)!r}"
        for number, line in enumerate(text.splitlines(), 1)
        for match in FORBIDDEN_WORDS.finditer(line)
    ]
    assert mentions == []


@pytest.mark.parametrize(
    ("source", "is_allowed"),
    [
        ("from iii_trio.runtime.engine import Engine", False),
        ("if TYPE_CHECKING:\n    from iii_trio.sdk import Worker", False),
        ("import iii_trio.runtime", False),
        ("def f():\n    import orjson", False),
        ("from .. import runtime", False),
        ("from iii_trio.actors.actor import Actor", True),
        ("from . import mailbox", True),
        ("import contextvars, trio, attrs", True),
    ],
)
def test_the_check_itself(source: str, is_allowed: bool) -> None:
    modules = [name for _, name in imported_modules(ast.parse(source))]
    assert all(allowed(name) for name in modules) is is_allowed
